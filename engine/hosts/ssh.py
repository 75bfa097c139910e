"""SSH worker hosts (``kind = "ssh"``, docs/hosts.md), with asyncssh and the git CLI.

mc keeps one bare clone per host (``<remote_dir>/repo.git``) and one remote worktree per
local worktree (``<remote_dir>/work/<local worktree name>``). Each agent process on the host:

1. the local worktree's ``HEAD`` is pushed to the clone (``git push`` over ``GIT_SSH_COMMAND``
   with the same key and known_hosts) and the remote worktree is set to it, clean;
2. the command runs there in a new session (``setsid``: its own process group) with the
   agent's allowlisted environment; stdout and stderr are streamed line by line into the
   same callback as a local process;
3. the remote work (uncommitted changes committed) is fetched back and fast-forwarded onto
   the local worktree, so the unit is judged, reviewed and merged locally as always.

A timeout or cancel sends SIGTERM, then SIGKILL, to the remote process group. A dropped
connection ends the session with the reason (``exit_code`` None): the host is checked, drained
and the unit runs elsewhere. Host keys are checked against ``known_hosts``; an unknown or
wrong key is refused unless ``trust_unknown_host_key`` is set.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import shlex
import subprocess
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

import anyio
import asyncssh

from engine.agents.process import (
    MAX_LINE_BYTES,
    Line,
    LineSplitter,
    ProcessOutcome,
    _Tail,
    decode,
)
from engine.host_config import SshHostConfig
from engine.hosts.remote import RemoteHost, own_worktree

# The remote's own values of these win (paths and identity differ there).
REMOTE_OWN_ENV = {"PATH", "HOME", "USER", "LOGNAME", "SHELL", "TMPDIR", "PYTHONPYCACHEPREFIX"}
PGID_MARK = "mc-remote-pgid "


class SshHostError(RuntimeError):
    """The host cannot be reached, refused the login or its key, or git failed on it."""


class SshHost(RemoteHost[SshHostConfig]):
    kind = "ssh"

    def __init__(self, name: str, slots: int, config: SshHostConfig) -> None:
        super().__init__(name, slots, config)
        self._root: str | None = None  # absolute remote_dir, learned on the first check

    # ------------------------------------------------------------------ connection
    def _options(self) -> dict[str, object]:
        cfg = self.config
        known: object = None
        if not cfg.trust_unknown_host_key:
            known = str(cfg.known_hosts or Path("~/.ssh/known_hosts").expanduser())
        opts: dict[str, object] = {
            "host": cfg.address, "port": cfg.port, "username": cfg.user or getpass.getuser(),
            "known_hosts": known, "connect_timeout": cfg.connect_timeout,
        }
        if cfg.identity_file is not None:
            opts["client_keys"] = [str(Path(cfg.identity_file).expanduser())]
        return opts

    async def connect(self) -> asyncssh.SSHClientConnection:
        try:
            return await asyncssh.connect(**self._options())  # type: ignore[arg-type]
        except asyncssh.HostKeyNotVerifiable as exc:
            raise SshHostError(f"host key of {self.config.address}:{self.config.port} refused "
                               f"({exc}); add it to known_hosts") from None
        except (TimeoutError, OSError, asyncssh.Error) as exc:
            raise SshHostError(f"cannot connect to {self.config.address}:{self.config.port}: "
                               f"{exc or type(exc).__name__}") from None

    def git_ssh_command(self) -> str:
        cfg = self.config
        parts = ["ssh", "-p", str(cfg.port), "-o", "BatchMode=yes",
                 "-o", f"ConnectTimeout={int(cfg.connect_timeout)}"]
        if cfg.identity_file is not None:
            parts += ["-i", str(Path(cfg.identity_file).expanduser()), "-o", "IdentitiesOnly=yes"]
        if cfg.trust_unknown_host_key:
            parts += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
        else:
            known = cfg.known_hosts or Path("~/.ssh/known_hosts").expanduser()
            parts += ["-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known}"]
        return shlex.join(parts)

    def url(self, path: str) -> str:
        user = self.config.user or getpass.getuser()
        return f"ssh://{user}@{self.config.address}:{self.config.port}{path}"

    # ------------------------------------------------------------------ health
    def check(self) -> str | None:
        """Log in, make sure git and the clone are there (blocking)."""
        try:
            asyncio.run(self._prepare())
        except SshHostError as exc:
            return str(exc)
        return None

    async def _prepare(self) -> None:
        conn = await self.connect()
        async with conn:
            script = (f"mkdir -p {_q(self.config.remote_dir)} && cd {_q(self.config.remote_dir)} "
                      "&& (test -d repo.git || git init -q --bare repo.git) && pwd")
            done = await conn.run(_login(script), check=False)
            if done.exit_status != 0:
                raise SshHostError(f"preparing {self.config.remote_dir} on {self.name} failed: "
                                   f"{str(done.stderr).strip()[-300:]}")
            self._root = str(done.stdout).strip().splitlines()[-1]

    # ------------------------------------------------------------------ running
    async def run_streaming(
        self, argv: list[str], *, cwd: Path, env: Mapping[str, str],
        on_line: Callable[[Line], None], stdin: bytes | None = None,
        timeout: float | None = None, kill_grace: float = 5.0,
        max_line_bytes: int = MAX_LINE_BYTES, result_seen: Callable[[], bool] | None = None,
        result_grace: float = 5.0,
    ) -> ProcessOutcome:
        """Run ``argv`` on the host in a copy of the local worktree ``cwd``; see the module
        docstring. Raises ``OSError`` when the host cannot be reached or the copy fails."""
        started = time.monotonic()
        cwd = own_worktree(cwd)  # the work is fast-forwarded back into cwd
        if self._root is None:
            try:
                await self._prepare()
            except SshHostError as exc:
                raise OSError(str(exc)) from None
        root = self._root
        assert root is not None
        work = f"{root}/work/{cwd.name}"
        head = (await _git(cwd, "rev-parse", "HEAD")).strip()
        # a ref per base commit: pushing it never moves an existing ref, so no force is needed
        ref = f"refs/mc/base/{cwd.name}/{head}"
        await self._push(cwd, head, ref)
        try:
            conn = await self.connect()
        except SshHostError as exc:
            raise OSError(str(exc)) from None
        outcome = ProcessOutcome(exit_code=None, pid=0)
        async with conn:
            setup = (f"cd {_q(root)} && if [ -d {_q(work)} ]; then cd {_q(work)} && "
                     f"git checkout -qf --detach {head} && git clean -qfdx; else "
                     f"git --git-dir=repo.git worktree add -qf --detach {_q(work)} {head}; fi")
            done = await conn.run(_login(setup), check=False)
            if done.exit_status != 0:
                raise OSError(f"preparing the worktree on {self.name} failed: "
                              f"{str(done.stderr).strip()[-300:]}")
            await self._run(conn, argv, work, env, on_line, stdin, timeout, kill_grace,
                            max_line_bytes, result_seen, result_grace, outcome)
            if outcome.exit_code is not None or outcome.timed_out or outcome.ended_after_result:
                await self._bring_back(conn, cwd, work, ref)
        outcome.duration_s = time.monotonic() - started
        return outcome

    async def _push(self, cwd: Path, head: str, ref: str) -> None:
        env = {**os.environ, "GIT_SSH_COMMAND": self.git_ssh_command()}
        try:
            await _git(cwd, "push", "-q", self.url(f"{self._root}/repo.git"),
                       f"{head}:{ref}", env=env)
        except SshHostError as exc:
            raise OSError(f"pushing the unit's base to {self.name} failed: {exc}") from None

    async def _bring_back(self, conn: asyncssh.SSHClientConnection, cwd: Path, work: str,
                          ref: str) -> None:
        save = (f"cd {_q(work)} && git add -A && (git diff --cached --quiet || git "
                "-c user.name=mc -c user.email=mc@localhost commit -qm "
                f"'mc: uncommitted work of the session on host {self.name}') && "
                f"git update-ref {ref}-out HEAD")
        done = await conn.run(_login(save), check=False)
        if done.exit_status != 0:
            raise OSError(f"saving the work on {self.name} failed: "
                          f"{str(done.stderr).strip()[-300:]}")
        env = {**os.environ, "GIT_SSH_COMMAND": self.git_ssh_command()}
        try:
            await _git(cwd, "fetch", "-q", self.url(f"{self._root}/repo.git"), f"{ref}-out",
                       env=env)
            await _git(cwd, "merge", "-q", "--ff-only", "FETCH_HEAD")
        except SshHostError as exc:
            raise OSError(f"fetching the work back from {self.name} failed: {exc}") from None

    async def _run(self, conn: asyncssh.SSHClientConnection, argv: list[str], work: str,
                   env: Mapping[str, str], on_line: Callable[[Line], None],
                   stdin: bytes | None, timeout: float | None, kill_grace: float,
                   max_line_bytes: int, result_seen: Callable[[], bool] | None,
                   result_grace: float, outcome: ProcessOutcome) -> None:
        sent = {k: v for k, v in env.items() if k not in REMOTE_OWN_ENV}  # env: allowlisted
        # The values (API keys among them) go through a private file, never the command line,
        # which any user of the host could read in ps / /proc/*/cmdline.
        env_file = f"{self._root}/env-{uuid.uuid4().hex}.sh"
        exports = "".join(f"export {k}={_q(v)}\n" for k, v in sorted(sent.items()))
        wrote = await conn.run(_login(f"umask 077 && cat > {_q(env_file)}"), input=exports,
                               check=False)
        if wrote.exit_status != 0:
            raise OSError(f"passing the environment to {self.name} failed: "
                          f"{str(wrote.stderr).strip()[-300:]}")
        inner = ("echo \"" + PGID_MARK + "$$\" >&2; . " + _q(env_file) + "; rm -f "
                 + _q(env_file) + '; exec "$@"')
        command = (f"cd {_q(work)} && exec setsid -w sh -c {_q(inner)} sh "
                   + " ".join(_q(a) for a in argv))
        pgid: int | None = None
        tail = _Tail()
        proc = await conn.create_process(_login(command), encoding=None)
        if stdin:
            proc.stdin.write(stdin)
        proc.stdin.write_eof()

        async def pump(stream: asyncssh.SSHReader[bytes], name: str) -> None:
            nonlocal pgid
            splitter = LineSplitter(max_line_bytes)

            def deliver(items: list[tuple[bytes, bool, int]]) -> None:
                nonlocal pgid
                for raw, truncated, size in items:
                    text = decode(raw)
                    if name == "stderr" and pgid is None and text.startswith(PGID_MARK):
                        pgid = int(text[len(PGID_MARK):])
                        continue
                    outcome.lines += 1
                    outcome.truncated_lines += int(truncated)
                    if name == "stderr":
                        tail.add(text)
                    on_line(Line(text, name, truncated, size))

            try:
                while chunk := await stream.read(65536):
                    deliver(splitter.feed(chunk))
            except (asyncssh.Error, OSError, BrokenPipeError):
                pass
            deliver(splitter.flush())

        async def kill() -> None:
            if pgid is None:
                proc.close()
                return
            with anyio.move_on_after(kill_grace + 5):
                await conn.run(f"kill -TERM -- -{pgid} 2>/dev/null; sleep {kill_grace}; "
                               f"kill -KILL -- -{pgid} 2>/dev/null; true", check=False)
            outcome.killed = True

        async def wait_exit() -> None:
            grace_ends: float | None = None
            while proc.exit_status is None and not conn.is_closed():
                if grace_ends is None and result_seen is not None and result_seen():
                    grace_ends = time.monotonic() + result_grace
                if grace_ends is not None and time.monotonic() >= grace_ends:
                    outcome.ended_after_result = True
                    return
                await anyio.sleep(0.02)

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(pump, proc.stdout, "stdout")
                tg.start_soon(pump, proc.stderr, "stderr")
                with anyio.move_on_after(timeout) as deadline:
                    await wait_exit()
                outcome.timed_out = deadline.cancelled_caught
                if outcome.timed_out or outcome.ended_after_result:
                    await kill()
                with anyio.move_on_after(2):
                    await proc.wait_closed()
                tg.cancel_scope.cancel()
        except BaseException:
            outcome.cancelled = True
            with anyio.CancelScope(shield=True):
                if not conn.is_closed():
                    await kill()
            raise
        if conn.is_closed() and proc.exit_status is None:
            tail.add(f"ssh connection to {self.name} lost during the session")
        else:
            outcome.exit_code = proc.exit_status
        outcome.pid = pgid or 0
        outcome.stderr_tail = tail.text()


def _q(value: str) -> str:
    return shlex.quote(value)


def _login(command: str) -> str:
    """Run ``command`` in a login shell (the user's PATH on the host)."""
    return f"sh -lc {_q(command)}"


async def _git(cwd: Path, *args: str, env: Mapping[str, str] | None = None) -> str:
    done = await anyio.run_process(["git", "-C", str(cwd), *args], check=False,
                                   env=dict(env) if env is not None else None,
                                   stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise SshHostError((done.stderr or b"").decode(errors="replace").strip()[-500:]
                           or f"git {args[0]} exited with {done.returncode}")
    return done.stdout.decode(errors="replace")
