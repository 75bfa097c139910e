"""Process control shared by every backend.

Each agent runs under mc's supervisor (``engine/lifeline.py``) in its own session
(``start_new_session=True``): the supervisor leads a process group that holds the agent
and all its descendants, and ends that group if mc dies (see docs/agents.md, "Process
lifetime"). The group's identity is announced to the attempt's recorder. stdout and
stderr are drained concurrently line by line; over-long lines are truncated (the rest of
the stream is still read) and invalid UTF-8 is replaced. A timeout or a cancellation
sends SIGTERM to the whole group, then SIGKILL after a grace period. The environment is
an allowlist: secrets the engine holds (MC_*, the Telegram token) never reach it.
"""

from __future__ import annotations

import fnmatch
import os
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import anyio
from anyio.abc import ByteReceiveStream

from engine.agents.placement import current_host
from engine.bytecode import keep_bytecode_out
from engine.lifeline import announce, supervised

MAX_LINE_BYTES = 1024 * 1024  # longer lines are cut to this size
READ_CHUNK = 64 * 1024
DRAIN_AFTER_EXIT_S = 0.5  # after the leader exits, how long descendants may keep the pipes open
POLL_S = 0.02

# Always passed through when set.
BASE_ENV = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_*", "TERM", "TMPDIR", "SHELL", "TZ",
            "PYTHONPYCACHEPREFIX", "PYTHONDONTWRITEBYTECODE")
# What agent CLIs need (credentials and their own settings).
BACKEND_ENV = (
    "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "ANTHROPIC_MODEL", "CLAUDE_CODE_*",
    "CLAUDE_CONFIG_DIR", "IS_SANDBOX", "OPENAI_API_KEY", "OPENAI_BASE_URL", "CODEX_API_KEY", "CODEX_HOME",
    "GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_CLOUD_PROJECT", "GOOGLE_GENAI_USE_VERTEXAI",
    "AIDER_*", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME",
    # codex, gemini-cli and aider (litellm) endpoints: proxies, Azure, Vertex
    "OPENAI_API_BASE", "AZURE_OPENAI_API_KEY", "AZURE_API_KEY", "AZURE_API_BASE",
    "AZURE_API_VERSION", "GOOGLE_GEMINI_BASE_URL", "GOOGLE_VERTEX_BASE_URL",
    "GOOGLE_CLOUD_LOCATION", "GOOGLE_APPLICATION_CREDENTIALS", "GEMINI_CLI_SYSTEM_SETTINGS_PATH",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY",
)
# Never passed, whatever the allowlist or the passthrough says.
DENY_ENV = ("MC_*",)


def build_env(
    *,
    passthrough: Iterable[str] = (),
    deny: Iterable[str] = (),
    extra: Mapping[str, str] | None = None,
    base: Mapping[str, str] | None = None,
    backend: bool = True,
) -> dict[str, str]:
    """The environment for an agent: allowlisted names (globs) minus denied ones.

    ``deny`` adds names (e.g. the Telegram token variable named in the config);
    ``MC_*`` is always denied. ``backend=False`` leaves out the agent backends' own
    variables (model API keys, base URLs): for a command that is not an agent, such as a
    verification run on another machine. ``extra`` values are set last but still filtered. Python's
    bytecode caches are kept out of the worktree (``engine/bytecode.py``).
    """
    source = os.environ if base is None else base
    allow = (*BASE_ENV, *(BACKEND_ENV if backend else ()), *passthrough)
    denied = (*DENY_ENV, *deny)

    def ok(name: str) -> bool:
        if any(fnmatch.fnmatchcase(name, pat) for pat in denied):
            return False
        return any(fnmatch.fnmatchcase(name, pat) for pat in allow)

    env = {k: v for k, v in source.items() if ok(k)}
    for key, value in (extra or {}).items():
        if not any(fnmatch.fnmatchcase(key, pat) for pat in denied):
            env[key] = value
    keep_bytecode_out(env)
    return env


@dataclass
class Line:
    """One output line: decoded text, which stream, and whether it was cut."""

    text: str
    stream: str  # "stdout" | "stderr"
    truncated: bool = False
    size: int = 0  # original size in bytes (without the newline)


class LineSplitter:
    """Split a byte stream into lines, keeping at most ``limit`` bytes of each."""

    def __init__(self, limit: int = MAX_LINE_BYTES) -> None:
        self.limit = limit
        self._buf = bytearray()
        self._head: bytes | None = None  # kept part of an over-long line
        self._size = 0  # bytes seen of the current over-long line

    def feed(self, chunk: bytes) -> list[tuple[bytes, bool, int]]:
        """Return completed lines as ``(bytes, truncated, original_size)``."""
        out: list[tuple[bytes, bool, int]] = []
        while chunk:
            nl = chunk.find(b"\n")
            part, chunk = (chunk, b"") if nl < 0 else (chunk[:nl], chunk[nl + 1 :])
            if self._head is not None:
                self._size += len(part)
            else:
                self._buf += part
                if len(self._buf) > self.limit:
                    self._head = bytes(self._buf[: self.limit])
                    self._size = len(self._buf)
                    self._buf.clear()
            if nl >= 0:
                out.append(self._take())
        return out

    def flush(self) -> list[tuple[bytes, bool, int]]:
        """The unterminated last line, if any (a stream that ended mid-line)."""
        if self._head is None and not self._buf:
            return []
        return [self._take()]

    def _take(self) -> tuple[bytes, bool, int]:
        if self._head is not None:
            line, size = self._head, self._size
            self._head, self._size = None, 0
            return line, True, size
        line = bytes(self._buf)
        self._buf.clear()
        return line, False, len(line)


def decode(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace").rstrip("\r")


@dataclass
class ProcessOutcome:
    """How a process ended."""

    exit_code: int | None
    timed_out: bool = False
    cancelled: bool = False
    killed: bool = False  # the group had to be SIGKILLed
    stderr_tail: str = ""
    duration_s: float = 0.0
    lines: int = 0
    truncated_lines: int = 0
    pid: int | None = None
    ended_after_result: bool = False  # still running ``result_grace`` s after its result: killed
    stalled: bool = False  # no output line for ``stall_timeout`` s: the group was ended


@dataclass
class _Tail:
    max_chars: int = 8000
    parts: deque[str] = field(default_factory=deque)
    size: int = 0

    def add(self, text: str) -> None:
        self.parts.append(text)
        self.size += len(text) + 1
        while self.size > self.max_chars and len(self.parts) > 1:
            self.size -= len(self.parts.popleft()) + 1

    def text(self) -> str:
        return "\n".join(self.parts)[-self.max_chars :]


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in group ``pgid``; falls back to ``killpg(0)``."""
    # twin on Ray nodes: engine/hosts/ray_session.py (stdlib only, shipped by value)
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
            return [pgid]
        except (ProcessLookupError, PermissionError):
            return []
    members = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...; comm may contain spaces and parens
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) >= 3 and int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


async def terminate_group(pgid: int, grace: float) -> bool:
    """SIGTERM the group, wait up to ``grace`` seconds, then SIGKILL. True if SIGKILL was needed."""
    if not group_members(pgid):
        return False
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not group_members(pgid):
            return False
        await anyio.sleep(POLL_S * 2)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    # SIGKILL cannot be ignored; wait (briefly) until the kernel has taken them down.
    for _ in range(100):
        if not group_members(pgid):
            break
        await anyio.sleep(POLL_S)
    return True


LineCallback = Callable[[Line], None]


async def run_streaming(
    argv: list[str],
    *,
    cwd: str | os.PathLike[str],
    env: Mapping[str, str],
    on_line: LineCallback,
    stdin: bytes | None = None,
    timeout: float | None = None,
    kill_grace: float = 5.0,
    max_line_bytes: int = MAX_LINE_BYTES,
    result_seen: Callable[[], bool] | None = None,
    result_grace: float = 5.0,
    stall_timeout: float | None = None,
) -> ProcessOutcome:
    """Run ``argv`` in its own process group, calling ``on_line`` for every output line.

    Returns when the process and its group are gone. Raises ``OSError`` (e.g.
    ``FileNotFoundError``) if it cannot start. On timeout the group is terminated and
    ``timed_out`` is set; on cancellation it is terminated too and the cancellation
    propagates. The process runs under the supervisor, so it dies with mc; ``pid`` in
    the outcome is the supervisor's, which is also the process group id. Once
    ``result_seen()`` is true (the agent printed its final result), the process gets
    ``result_grace`` seconds to exit before its group is terminated
    (``ended_after_result``): a CLI that lingers after its answer never waits for ``timeout``.
    When no stdout or stderr line arrives for ``stall_timeout`` seconds the group is ended
    too (``stalled``): a silent agent is not held until ``timeout``.
    """
    started = time.monotonic()
    host = current_host()
    remote = getattr(host, "run_streaming", None)
    if remote is not None:  # a remote host runs it there (engine/hosts/ssh.py)
        return await remote(list(argv), cwd=Path(cwd), env=env, on_line=on_line, stdin=stdin,
                            timeout=timeout, kill_grace=kill_grace, max_line_bytes=max_line_bytes,
                            result_seen=result_seen, result_grace=result_grace)
    if host is not None:  # a sandbox wraps the command (engine/hosts/sandbox.py)
        argv = host.wrap(list(argv), cwd=Path(cwd), env=env)
    command, pass_fds = supervised(argv, cwd=cwd, env=env, grace=kill_grace)
    proc = await anyio.open_process(
        command,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=str(cwd),
        env=dict(env),
        start_new_session=True,
        pass_fds=pass_fds,
    )
    pgid = proc.pid
    outcome = ProcessOutcome(exit_code=None, pid=proc.pid)
    tail = _Tail()
    open_pumps = 2
    pumps_done = anyio.Event()
    last_output = time.monotonic()

    async def pump(stream: ByteReceiveStream | None, name: str) -> None:
        nonlocal open_pumps
        splitter = LineSplitter(max_line_bytes)

        def deliver(items: list[tuple[bytes, bool, int]]) -> None:
            nonlocal last_output
            for raw, truncated, size in items:
                last_output = time.monotonic()
                text = decode(raw)
                outcome.lines += 1
                outcome.truncated_lines += int(truncated)
                if name == "stderr":
                    tail.add(text)
                on_line(Line(text, name, truncated, size))

        try:
            if stream is not None:
                async for chunk in stream:
                    deliver(splitter.feed(chunk))
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass
        finally:
            deliver(splitter.flush())
            open_pumps -= 1
            if open_pumps == 0:
                pumps_done.set()

    async def feed_stdin() -> None:
        if proc.stdin is None:
            return
        try:
            if stdin:
                await proc.stdin.send(stdin)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass
        finally:
            try:
                await proc.stdin.aclose()
            except (anyio.BrokenResourceError, OSError):
                pass

    async def leader_exit() -> None:
        # Process.wait() also waits for the pipes, which a descendant may hold open.
        grace_ends: float | None = None
        while proc.returncode is None:
            if grace_ends is None and result_seen is not None and result_seen():
                grace_ends = time.monotonic() + result_grace
            if grace_ends is not None and time.monotonic() >= grace_ends:
                outcome.ended_after_result = True
                return  # the group is terminated below
            if stall_timeout is not None and time.monotonic() - last_output >= stall_timeout:
                outcome.stalled = True
                return  # silent for too long: the group is terminated below
            await anyio.sleep(POLL_S)

    try:
        announce(proc.pid)  # inside the try: if recording fails, the group still ends
        async with anyio.create_task_group() as tg:
            tg.start_soon(pump, proc.stdout, "stdout")
            tg.start_soon(pump, proc.stderr, "stderr")
            tg.start_soon(feed_stdin)
            with anyio.move_on_after(timeout) as deadline:
                await leader_exit()
                with anyio.move_on_after(DRAIN_AFTER_EXIT_S):
                    await pumps_done.wait()
            outcome.timed_out = deadline.cancelled_caught
            # Whatever is left of the group (a hung leader, a stray grandchild) goes now.
            outcome.killed = await terminate_group(pgid, kill_grace)
            with anyio.move_on_after(kill_grace + 1):
                await pumps_done.wait()
            tg.cancel_scope.cancel()
    except BaseException:
        outcome.cancelled = True
        raise
    finally:
        with anyio.CancelScope(shield=True):
            if group_members(pgid):
                outcome.killed = await terminate_group(pgid, kill_grace) or outcome.killed
            with anyio.move_on_after(kill_grace + 1):
                await proc.wait()
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    try:
                        await stream.aclose()
                    except Exception:
                        pass
    outcome.exit_code = proc.returncode
    outcome.stderr_tail = tail.text()
    outcome.duration_s = time.monotonic() - started
    return outcome
