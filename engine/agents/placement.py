"""Where the current task's agent processes run: a host (``engine/hosts``) or here.

The dispatch task sets the host of its slot (``running_on``); ``run_streaming`` wraps each
command with it (``wrap``) or hands the process to it (``run_streaming``, remote hosts); the
worker reads its ``permission_mode`` and the recorder its ``name``. Kept in ``agents`` so the
agents never import the hosts (which import the agents' process layer).
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable


@runtime_checkable
class Host(Protocol):
    """A place agent sessions run (docs/hosts.md)."""

    name: str
    kind: str
    slots: int

    def wrap(self, argv: list[str], *, cwd: Path, env: Mapping[str, str]) -> list[str]:
        """The command line that runs ``argv`` (in ``cwd``, with ``env``) on this host."""

    def check(self) -> str | None:
        """None when healthy, else why not (blocking; called from a worker thread)."""


@dataclass
class Placement:
    """One dispatch's sessions on ``host``: ``lost`` says why a session was lost to a failure
    of part of the host (a cluster node died), not of the unit nor of the host as a whole."""

    host: Host | None
    lost: str | None = None


_current: contextvars.ContextVar[Host | None] = contextvars.ContextVar("mc_host", default=None)
_placement: contextvars.ContextVar[Placement | None] = contextvars.ContextVar(
    "mc_placement", default=None)


def current_host() -> Host | None:
    """The host the current task's agent sessions run on (None: plain local processes)."""
    return _current.get()


def session_lost(reason: str) -> None:
    """Record on the current placement that its session was lost to part of its host
    failing (the failover re-dispatches the unit without counting the attempt)."""
    placed = _placement.get()
    if placed is not None:
        placed.lost = reason


@contextmanager
def running_on(host: Host | None) -> Iterator[Placement]:
    """Run the agent sessions started inside this block on ``host``; yields the placement
    (a mutable record shared with the tasks started inside, which see the same object)."""
    placed = Placement(host)
    token = _current.set(host)
    token_placed = _placement.set(placed)
    try:
        yield placed
    finally:
        _placement.reset(token_placed)
        _current.reset(token)
