"""Processes that die with mc: each one runs under ``engine/supervisor.py`` on a lifeline.

:func:`supervised` turns an argv into the supervisor's command line plus the file
descriptor to pass it. mc holds the only write end of one lifeline pipe for its whole life
(created on first use, never inherited by anything else); when mc dies, however it dies,
the kernel closes it, each supervisor reads end of file and ends its process group (see
``engine/supervisor.py`` for why this and not a parent-death signal set from mc).

:class:`ProcessIdentity` is what the store records per attempt so that a later run can
tell a process mc started from an unrelated one that got the same pid: the pid, the
process group id, the start time (field 22 of ``/proc/<pid>/stat``, clock ticks since
boot) and the boot id. Listeners registered with :func:`on_spawn` (a context variable, so
it follows the task that runs the attempt) learn each identity as soon as it exists.
"""

from __future__ import annotations

import contextvars
import errno
import os
import shutil
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SUPERVISOR = str(Path(__file__).with_name("supervisor.py"))

_lock = threading.Lock()
_pipe: tuple[int, int, int] | None = None  # (owner pid, read end, write end)


def lifeline_fd() -> int:
    """The read end of this process's lifeline pipe (both ends are non-inheritable)."""
    global _pipe
    with _lock:
        if _pipe is None or _pipe[0] != os.getpid():  # a forked copy needs its own
            read_end, write_end = os.pipe()
            _pipe = (os.getpid(), read_end, write_end)
        return _pipe[1]


def resolve_executable(name: str, *, cwd: str | os.PathLike[str], env: Mapping[str, str]) -> str:
    """The path ``name`` runs from under ``env``'s PATH, as exec would find it.

    Raises ``FileNotFoundError`` (errno ENOENT) when there is none, the error starting it
    directly would raise, so callers see the same failure with or without the supervisor.
    """
    if os.sep in name:
        path = name if os.path.isabs(name) else os.path.join(os.fspath(cwd), name)
        found = path if os.path.isfile(path) and os.access(path, os.X_OK) else None
    else:
        found = shutil.which(name, path=env.get("PATH", os.defpath))
    if found is None:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), name)
    return found


def supervised(
    argv: Sequence[str], *, cwd: str | os.PathLike[str], env: Mapping[str, str], grace: float
) -> tuple[list[str], tuple[int]]:
    """``(command line, pass_fds)`` that run ``argv`` under the supervisor.

    Start it with ``start_new_session=True`` (the supervisor leads the process group that
    holds ``argv`` and all its descendants) and ``pass_fds``. ``grace`` is how long the
    group gets between SIGTERM and SIGKILL when mc dies. Raises ``FileNotFoundError`` if
    ``argv[0]`` cannot be found.
    """
    if not argv:
        raise ValueError("empty command")
    resolve_executable(argv[0], cwd=cwd, env=env)
    fd = lifeline_fd()
    command = [sys.executable, "-I", "-S", SUPERVISOR, str(fd), f"{grace:g}", "--", *argv]
    return command, (fd,)


# ---------------------------------------------------------------------- identity


@dataclass(frozen=True)
class ProcessIdentity:
    """A process as the store records it: safe against pid reuse and reboots."""

    pid: int
    pgid: int
    start_ticks: int | None  # /proc/<pid>/stat field 22; None where there is no /proc
    boot_id: str | None


def start_ticks(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot), or None if it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()  # from field 3 (state) on
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])  # field 22


def boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def identify(pid: int) -> ProcessIdentity:
    """The identity of the live process ``pid`` (its group defaults to its pid)."""
    try:
        pgid = os.getpgid(pid)
    except OSError:
        pgid = pid
    return ProcessIdentity(pid, pgid, start_ticks(pid), boot_id())


SpawnListener = Callable[[ProcessIdentity], None]
_listener: contextvars.ContextVar[SpawnListener | None] = contextvars.ContextVar(
    "mc_spawn_listener", default=None
)


@contextmanager
def on_spawn(listener: SpawnListener) -> Iterator[None]:
    """Call ``listener`` with the identity of each supervised process started in this context."""
    token = _listener.set(listener)
    try:
        yield
    finally:
        _listener.reset(token)


def announce(pid: int) -> None:
    """Tell the current context's listener (if any) that ``pid`` was started."""
    listener = _listener.get()
    if listener is not None:
        listener(identify(pid))
