"""The engine's wall clock, injectable: what stamps events and rows, and dates commits.

``now()`` is ``time.time()`` unless a test installed another clock with :func:`use_clock`
(for example :func:`fixed_clock`: a start time that advances by a fixed step per reading),
so a run of the real pipeline can be recorded with the same timestamps every time. While a
clock is installed, the commits the engine makes are dated by it too (pygit2 signatures in
``engine/gitops/identity.py``; ``GIT_AUTHOR_DATE`` / ``GIT_COMMITTER_DATE`` from
:func:`git_date_env` for the git CLI), so their ids do not depend on when the test ran.

Durations and timeouts keep using ``time.monotonic()``: a frozen wall clock must never stop
a timeout from expiring.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

Clock = Callable[[], float]

_clock: Clock | None = None  # None: the real time


def now() -> float:
    """Seconds since the epoch: the installed clock's, else ``time.time()``."""
    return _clock() if _clock is not None else time.time()


def installed() -> bool:
    """Whether a test clock is installed (commits are then dated by it)."""
    return _clock is not None


@contextmanager
def use_clock(clock: Clock) -> Iterator[Clock]:
    """Install ``clock`` for the engine while the block runs (tests only; not thread-local:
    the engine's worker threads read it too, which is the point)."""
    global _clock
    previous, _clock = _clock, clock
    try:
        yield clock
    finally:
        _clock = previous


def fixed_clock(start: float, step: float = 0.0) -> Clock:
    """A clock that reads ``start``, then ``start + step``, ``start + 2 * step``, ...: the
    same timestamps for the same sequence of readings (``step=0``: time stands still)."""
    ticks = itertools.count()
    return lambda: start + step * next(ticks)


def commit_time() -> tuple[int, int]:
    """(seconds, offset in minutes) for a commit signature: the installed clock in UTC,
    else the current time and local offset."""
    if _clock is None:
        seconds = time.time()
        offset = (time.localtime(seconds).tm_gmtoff or 0) // 60
        return int(seconds), offset
    return int(_clock()), 0


def git_date_env() -> dict[str, str]:
    """``GIT_AUTHOR_DATE`` and ``GIT_COMMITTER_DATE`` for a git CLI commit when a test clock is
    installed (empty otherwise: git dates it itself)."""
    if _clock is None:
        return {}
    stamp = f"@{int(_clock())} +0000"
    return {"GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp}
