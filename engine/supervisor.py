"""The supervisor between mc and each process it starts: the process dies with mc.

Run as a script, never imported by the engine at run time (standard library only, so it
starts in ~25 ms under ``python -I -S``)::

    python -I -S supervisor.py <lifeline fd> <grace seconds> -- <argv...>

mc starts it as the leader of a new session (its pid is the process group id), passing the
read end of a *lifeline* pipe whose write end only mc holds. The supervisor starts ``argv``
as its child, in the same process group, and then waits for either:

* the child to exit: the supervisor exits the same way (exit code, or the same signal), so
  mc sees the child's status;
* end of file on the lifeline: every write end is closed, which the kernel does when mc
  dies, however it dies (``kill -9`` included), whichever of its threads started us. The
  supervisor then ends the whole group: SIGTERM, up to ``grace`` seconds, then SIGKILL (which
  takes the supervisor down with it). Grandchildren (a Bash tool, a test runner) are in the
  group, so they go too.

The child also gets ``PR_SET_PDEATHSIG = SIGKILL`` (Linux): should the supervisor itself be
killed, the child dies with it. The parent-death signal fires when the *thread* that forked
the child exits; the supervisor has a single thread that lives exactly as long as it does,
which is why the signal is set here and not in mc, whose processes are forked from whichever
thread asked (the event-loop thread, anyio worker threads). The lifeline pipe is
process-scoped, so mc's threads do not matter. Precedents: Python's own
``multiprocessing.forkserver`` (an "alive" pipe), tini's ``-p``, golang/go#27505 and
containers/bubblewrap#692 (parent-death signal is thread-scoped).

The supervisor ignores SIGTERM, SIGINT and SIGHUP (mc ends a process with ``killpg``, which
reaches the child too; the supervisor stays to report how the child ended) and restores
every signal disposition Python changed before the child execs. If ``argv`` cannot be
started, it prints why on stderr and exits 127, as a shell does.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time

PR_SET_PDEATHSIG = 1
IGNORED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
POLL_S = 0.05


def set_parent_death_signal(sig: int) -> bool:
    """``prctl(PR_SET_PDEATHSIG, sig)`` on Linux; False where it does not exist."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) == 0


def group_alive(pgid: int, me: int) -> bool:
    """Another live (non-zombie) process is in group ``pgid``."""
    # twin on Ray nodes: ray_session.WATCHDOG's alive() (a script, as this one is)
    try:
        entries = os.listdir("/proc")
    except OSError:
        return True  # no /proc: wait the whole grace period
    for name in entries:
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) >= 3 and fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
            return True
    return False


def end_group(grace: float) -> None:
    """mc is gone: SIGTERM the group, wait up to ``grace`` s, SIGKILL it (and ourselves)."""
    me, pgid = os.getpid(), os.getpgrp()
    try:
        os.killpg(pgid, signal.SIGTERM)
    except OSError:
        pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.waitpid(-1, os.WNOHANG)  # reap our child, so it does not count as alive
        except ChildProcessError:
            pass
        if not group_alive(pgid, me):
            break
        time.sleep(POLL_S)
    os.killpg(pgid, signal.SIGKILL)
    os._exit(137)  # not reached: SIGKILL took us too


def exit_like(returncode: int) -> None:
    """Exit with the child's exit code, or die of the signal that killed it."""
    if returncode >= 0:
        os._exit(returncode)
    sig = -returncode
    try:
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    except (OSError, ValueError):
        pass
    os._exit(128 + sig)


def main(args: list[str]) -> None:
    if len(args) < 4 or args[2] != "--":
        sys.stderr.write("usage: supervisor.py <lifeline fd> <grace s> -- <argv...>\n")
        os._exit(2)
    lifeline, grace, argv = int(args[0]), float(args[1]), args[3:]
    me = os.getpid()
    for sig in IGNORED:
        signal.signal(sig, signal.SIG_IGN)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes select() through wake_w

    def before_exec() -> None:  # in the child, between fork and exec; we are single-threaded
        set_parent_death_signal(signal.SIGKILL)
        if os.getppid() != me:  # we died before the signal was set: nobody would send it
            os._exit(137)
        for sig in IGNORED:
            signal.signal(sig, signal.SIG_DFL)

    if select.select([lifeline], [], [], 0)[0] and not os.read(lifeline, 512):
        os._exit(137)  # mc died before we got here: start nothing
    try:
        # close_fds (the default) keeps the lifeline and the wake-up pipe from the child;
        # restore_signals (the default) resets what Python ignores (SIGPIPE, SIGXFSZ).
        child = subprocess.Popen(argv, preexec_fn=before_exec)
    except (OSError, subprocess.SubprocessError) as exc:
        sys.stderr.write(f"mc supervisor: cannot start {argv[0]!r}: {exc}\n")
        sys.stderr.flush()
        os._exit(127)
    while True:
        code = child.poll()
        if code is not None:
            exit_like(code)
        try:
            ready, _, _ = select.select([lifeline, wake_r], [], [])
        except InterruptedError:
            continue
        if wake_r in ready:
            try:
                while os.read(wake_r, 512):
                    pass
            except BlockingIOError:
                pass
        if lifeline in ready:
            try:
                data = os.read(lifeline, 512)
            except OSError:
                data = b""
            if not data:  # end of file: mc is gone
                end_group(grace)


if __name__ == "__main__":
    main(sys.argv[1:])
