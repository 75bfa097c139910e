"""What the hosts that run agents on other machines (``ssh``, ``ray``) share
(docs/hosts.md). Kept apart from :mod:`engine.hosts.base`, whose fleet imports those hosts
(lazily, on first use): they import this module, so the package has no import cycle."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Generic, TypeVar

from engine.host_config import RayHostConfig, SshHostConfig

ConfigT = TypeVar("ConfigT", SshHostConfig, RayHostConfig)


class RemoteHost(Generic[ConfigT]):
    """What the hosts that run agents on other machines (``ssh``, ``ray``) share: a name, its
    slots and its ``[[hosts]]`` config. Such a host runs the process itself (its own
    ``run_streaming``), in a copy of one of mc's worktrees whose work it fetches back."""

    kind: str

    def __init__(self, name: str, slots: int, config: ConfigT) -> None:
        self.name = name
        self.slots = slots
        self.config = config
        self.permission_mode: str | None = None  # None: agent.permission_mode

    def wrap(self, argv: list[str], *, cwd: Path, env: Mapping[str, str]) -> list[str]:
        return list(argv)  # not used: run_streaming runs the process on the other machine


def own_worktree(cwd: Path | str) -> Path:
    """``cwd`` as a ``Path``, when it is one of mc's worktrees (its ``.git`` is a file): a remote
    host fast-forwards the work back into it. Raises ``OSError`` otherwise (never the user's
    checkout)."""
    cwd = Path(cwd)
    if not (cwd / ".git").is_file():
        raise OSError(f"{cwd} is not one of mc's worktrees: a remote host runs agents only "
                      "there, never in the user's checkout")
    return cwd
