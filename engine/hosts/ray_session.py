"""One agent session on a Ray node (``kind = "ray"``, docs/hosts.md): the node's half.

Standalone on purpose (standard library only, no mc imports): mc ships this module to the
cluster by value (cloudpickle, ``register_pickle_by_value`` in ``ray_cluster.session_class``),
so a node needs Ray, git and the agent CLI, never mc itself. An import of any ``engine``
module here would be pickled by reference and fail on a node without mc. So two pieces repeat
mc's own on purpose, and a change to one belongs in its twin too: :func:`group_members` (the
/proc scan of a process group) is ``engine.agents.process.group_members`` and
:meth:`AgentSession.stop` is ``terminate_group`` there (blocking); the ``WATCHDOG``
script's ``alive()`` and end-the-group loop are ``engine/supervisor.py``'s ``group_alive``
and ``end_group`` (the supervisor reaches a node only as script text, passed to
:meth:`AgentSession.start`, never as a module this one could import).

mc creates one :class:`AgentSession` actor per agent process, requiring one unit of the
host's agent-slot resource, and calls, in order:

1. :meth:`~AgentSession.prepare`: fetch the unit's base commit from the git remote every
   node can reach into the node's clone (``<work_dir>/repo.git``) and add a fresh worktree
   for it (``<work_dir>/work/<session>``), under a file lock (sessions of one node share the
   clone);
2. :meth:`~AgentSession.start`: run the argv there under mc's supervisor (its own process
   group) with the allowlisted environment mc sent, the node's own ``PATH``, ``HOME`` ...
   winning; a detached watchdog ends the whole group when this actor's process dies, however
   it dies (``WATCHDOG``);
3. :meth:`~AgentSession.poll` until it has ended (raw output chunks, split into lines by
   mc), or :meth:`~AgentSession.stop` (SIGTERM, then SIGKILL to the group);
4. :meth:`~AgentSession.finish`: commit what the agent left uncommitted and push the result
   to a new ref on the remote (never forced); mc fetches it back;
5. :meth:`~AgentSession.cleanup`: remove the worktree.

A queue verification (``engine/hosts/ray_verify.py``) uses the same actor: ``prepare``,
:meth:`~AgentSession.scratch_dir` (where the command's JUnit reports go), ``start``, ``poll``
or ``stop``, :meth:`~AgentSession.read_files` (the reports back), ``cleanup``; no ``finish``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

# The node's own values of these win (paths and identity differ there).
NODE_OWN_ENV = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "TMPDIR", "PYTHONPYCACHEPREFIX")
DRAIN_AFTER_EXIT_S = 0.5  # after the leader exits, how long descendants may keep the pipes open
GIT_ID = ("-c", "user.name=mc", "-c", "user.email=mc@localhost")


# The watchdog: Ray SIGKILLs a dying worker's direct children (the supervisor), whose child
# then dies of its parent-death signal, but not the rest of the group (a Bash tool's
# children). So a detached process (forked twice: not the worker's child) holds the lifeline
# too and ends the group when the actor's process is gone; a byte on the lifeline (the session
# ended normally) lets it go quietly.
WATCHDOG = r"""
import os, signal, sys, time
fd, pgid, grace = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
if os.fork():
    os._exit(0)
os.setsid()
while True:
    try:
        data = os.read(fd, 1)
    except InterruptedError:
        continue
    break
if data:
    os._exit(0)
def alive():
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as fh:
                    stat = fh.read()
            except OSError:
                continue
            fields = stat[stat.rfind(")") + 2:].split()
            if len(fields) >= 3 and fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
                return True
    return False
try:
    os.killpg(pgid, signal.SIGTERM)
except OSError:
    os._exit(0)
deadline = time.monotonic() + grace
while alive() and time.monotonic() < deadline:
    time.sleep(0.05)
try:
    os.killpg(pgid, signal.SIGKILL)
except OSError:
    pass
"""


class SessionError(RuntimeError):
    """git failed on the node, or the session was used out of order."""


def _git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, check=False)
    if done.returncode != 0:
        raise SessionError(f"git {args[0]} failed on {socket.gethostname()}: "
                           f"{(done.stderr or done.stdout).strip()[-500:]}")
    return done.stdout


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of group ``pgid`` (from /proc)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) >= 3 and int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


class AgentSession:
    """One agent process on this node; see the module docstring for the order of calls."""

    def __init__(self) -> None:
        self.root: Path | None = None
        self.work: Path | None = None
        self.ref: str | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.chunks: queue.Queue[tuple[str, bytes | None]] = queue.Queue()
        self.open_streams = 0
        self.exited_at: float | None = None
        self.lifeline: int | None = None  # write end: closed when this process dies
        self.scratch: Path | None = None  # a verification's report folder, outside the tree

    def prepare(self, remote: str, ref: str, sha: str, work_dir: str, session: str
                ) -> dict[str, str]:
        """Check out ``sha`` (fetched from ``ref`` of ``remote``) in a new worktree.

        ``work_dir`` is absolute or relative to the node's home folder. Returns where it
        runs: ``node_id`` (Ray's), ``hostname`` and the worktree path. Raises SessionError.
        """
        import ray

        root = Path(os.path.expanduser(work_dir))
        if not root.is_absolute():
            root = Path.home() / root
        (root / "work").mkdir(parents=True, exist_ok=True)
        self.root, self.work = root, root / "work" / session
        self.ref = f"refs/mc/session/{session}"
        repo = root / "repo.git"
        with open(root / "lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # sessions of this node share the clone
            if not (repo / "HEAD").exists():
                _git(root, "init", "-q", "--bare", str(repo))
            _git(repo, "fetch", "-q", "--no-write-fetch-head", remote, f"{ref}:{self.ref}")
            got = _git(repo, "rev-parse", self.ref).strip()
            if got != sha:
                raise SessionError(f"{ref} on the remote is {got}, not the unit's base {sha}")
            _git(repo, "worktree", "add", "-q", "--detach", str(self.work), sha)
        return {"node_id": ray.get_runtime_context().get_node_id(),
                "hostname": socket.gethostname(), "work": str(self.work)}

    def start(self, argv: list[str], env: dict[str, str], stdin: bytes | None,
              supervisor: str, grace: float) -> int:
        """Start ``argv`` in the worktree; returns its process group id. ``supervisor`` is
        the source of mc's ``engine/supervisor.py``. Raises FileNotFoundError when
        ``argv[0]`` is not on the node."""
        if self.work is None or self.root is None:
            raise SessionError("start before prepare")
        full = {k: v for k, v in env.items() if k not in NODE_OWN_ENV}
        full.update({k: os.environ[k] for k in NODE_OWN_ENV if k in os.environ})
        full.setdefault("PYTHONPYCACHEPREFIX", str(self.root / "pycache"))  # not in the tree
        exe = argv[0]
        found = (os.path.isfile(exe) and os.access(exe, os.X_OK)) if os.sep in exe else \
            shutil.which(exe, path=full.get("PATH", os.defpath)) is not None
        if not found:
            raise FileNotFoundError(errno.ENOENT, f"{exe} is not installed on node "
                                    f"{socket.gethostname()}", exe)
        script = self.root / "supervisor.py"
        if not script.exists() or script.read_text() != supervisor:
            tmp = script.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(supervisor)
            tmp.replace(script)
        read_end, self.lifeline = os.pipe()  # both ends non-inheritable
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-S", str(script), str(read_end), f"{grace:g}", "--", *argv],
            cwd=self.work, env=full, start_new_session=True, pass_fds=(read_end,),
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        subprocess.run([sys.executable, "-I", "-S", "-c", WATCHDOG, str(read_end),
                        str(self.proc.pid), f"{grace:g}"], pass_fds=(read_end,),
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=True)  # returns once it is detached
        os.close(read_end)
        for name, stream in (("stdout", self.proc.stdout), ("stderr", self.proc.stderr)):
            self.open_streams += 1
            threading.Thread(target=self._read, args=(name, stream), daemon=True).start()
        if self.proc.stdin is not None:
            threading.Thread(target=self._feed, args=(stdin or b"",), daemon=True).start()
        return self.proc.pid

    def _read(self, name: str, stream: object) -> None:
        fd = stream.fileno()  # type: ignore[attr-defined]
        try:
            while chunk := os.read(fd, 65536):
                self.chunks.put((name, chunk))
        except OSError:
            pass
        self.chunks.put((name, None))

    def _feed(self, data: bytes) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        with contextlib.suppress(OSError):
            self.proc.stdin.write(data)
        with contextlib.suppress(OSError):
            self.proc.stdin.close()

    def poll(self, wait: float, max_bytes: int = 4 << 20
             ) -> tuple[list[tuple[str, bytes]], bool, int | None]:
        """Output since the last call (waits up to ``wait`` s for some): ``(chunks, ended,
        exit code)``; ``ended`` once the process has exited and its pipes are drained (or
        ``DRAIN_AFTER_EXIT_S`` passed); the code is negative for a signal."""
        if self.proc is None:
            raise SessionError("poll before start")
        out: list[tuple[str, bytes]] = []
        size, deadline = 0, time.monotonic() + wait
        while size < max_bytes:
            try:
                left = deadline - time.monotonic()
                name, chunk = (self.chunks.get(timeout=left) if not out and left > 0
                               else self.chunks.get_nowait())
            except queue.Empty:
                break
            if chunk is None:
                self.open_streams -= 1
                continue
            out.append((name, chunk))
            size += len(chunk)
        code = self.proc.poll()
        now = time.monotonic()
        if code is not None and self.exited_at is None:
            self.exited_at = now
        ended = (code is not None and self.chunks.empty()
                 and (self.open_streams == 0 or now - (self.exited_at or now) >= DRAIN_AFTER_EXIT_S))
        return out, ended, code

    def stop(self, grace: float) -> bool:
        """SIGTERM the group, up to ``grace`` s, then SIGKILL; True when SIGKILL was needed."""
        if self.proc is None:
            return False
        pgid = self.proc.pid
        if not group_members(pgid):
            return False
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            self.proc.poll()
            if not group_members(pgid):
                return False
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        for _ in range(100):
            self.proc.poll()
            if not group_members(pgid):
                break
            time.sleep(0.02)
        return True

    def finish(self, remote: str, out_ref: str, host: str) -> str:
        """Commit the session's uncommitted work, push it to ``out_ref`` on ``remote`` (a new
        ref, never forced); returns its commit."""
        if self.work is None:
            raise SessionError("finish before prepare")
        self.stop(1.0)  # descendants still holding on
        _git(self.work, "add", "-A")
        staged = subprocess.run(["git", "diff", "--cached", "--quiet"], cwd=self.work,
                                stdin=subprocess.DEVNULL, check=False)
        if staged.returncode != 0:
            _git(self.work, *GIT_ID, "commit", "-qm",
                 f"mc: uncommitted work of the session on host {host}")
        sha = _git(self.work, "rev-parse", "HEAD").strip()
        _git(self.work, "push", "-q", remote, f"HEAD:{out_ref}")
        return sha

    def scratch_dir(self) -> str:
        """A fresh folder beside the worktree (never in it) for a verification's JUnit
        reports; removed by :meth:`cleanup`."""
        if self.work is None:
            raise SessionError("scratch_dir before prepare")
        self.scratch = self.work.with_name(self.work.name + ".results")
        self.scratch.mkdir(parents=True, exist_ok=True)
        return str(self.scratch)

    def read_files(self, names: list[str], max_bytes: int) -> dict[str, bytes]:
        """The files among ``names`` in the scratch folder that exist and hold at most
        ``max_bytes`` bytes each (a larger report is left out, not cut)."""
        found: dict[str, bytes] = {}
        for name in names:
            if self.scratch is None or os.sep in name:
                continue
            path = self.scratch / name
            with contextlib.suppress(OSError):
                if path.is_file() and path.stat().st_size <= max_bytes:
                    found[name] = path.read_bytes()
        return found

    def cleanup(self) -> None:
        """End what is left of the process group, remove the worktree and the session ref."""
        if self.proc is not None:
            self.stop(1.0)
        if self.lifeline is not None:
            with contextlib.suppress(OSError):
                os.write(self.lifeline, b"x")  # ended here: the watchdog goes quietly
            os.close(self.lifeline)
            self.lifeline = None
        if self.root is not None and self.work is not None:
            repo = self.root / "repo.git"
            with open(self.root / "lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                with contextlib.suppress(SessionError):
                    _git(repo, "worktree", "remove", "--force", str(self.work))
                if self.ref:
                    with contextlib.suppress(SessionError):
                        _git(repo, "update-ref", "-d", self.ref)
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
