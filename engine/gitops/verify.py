"""Running the target's verification command in its own process group.

The command runs through the shell in a new session, under mc's supervisor (so the
supervisor leads its own process group, and the group ends if mc dies; see
``engine/lifeline.py``). On timeout the whole group is killed, and once the command
exits any stragglers it left behind are killed too, so nothing outlives a
verification. Output (stdout and stderr interleaved) is kept bounded: the
first quarter and the last three quarters of ``max_output_bytes``. Which tests failed is
read where the runner allows it (``testresults.py``: JUnit XML left in a temporary folder
outside the worktree, or unittest's text output).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import anyio
from anyio.abc import ByteReceiveStream

from engine.bytecode import keep_bytecode_out
from engine.gitops.cli import REDIRECTING_VARS
from engine.gitops.testresults import (
    JUNIT_FILE,
    NO_RESULTS,
    PYTEST_FILE,
    TestResults,
    read_results,
    results_env,
)
from engine.lifeline import supervised

DRAIN_SECONDS = 1.0
ORPHAN_GRACE_S = 2.0  # if mc dies mid-verification: SIGTERM, this long, then SIGKILL


@dataclass
class VerificationResult:
    status: str  # "passed" | "failed" | "timeout" | "error"
    exit_code: int | None
    output: str
    duration_s: float
    tests: TestResults = NO_RESULTS  # which tests failed, where the output could be read
    host: str = ""  # where it ran, when not on mc's machine ("ray cluster, node <id> (<name>)")

    @property
    def failing(self) -> frozenset[str] | None:
        return self.tests.failing


class BoundedOutput:
    """Keeps the head and the tail of a byte stream within ``limit`` bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = max(limit, 64)
        self.head_limit = self.limit // 4
        self.head = bytearray()
        self.tail = bytearray()
        self.dropped = 0

    def feed(self, data: bytes) -> None:
        room = self.head_limit - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        self.tail += data
        tail_limit = self.limit - self.head_limit
        if len(self.tail) > tail_limit:
            extra = len(self.tail) - tail_limit
            del self.tail[:extra]
            self.dropped += extra

    def text(self) -> str:
        if not self.dropped:
            return (self.head + self.tail).decode("utf-8", "replace")
        marker = f"\n[... {self.dropped} bytes of output omitted ...]\n".encode()
        return (self.head + marker + self.tail).decode("utf-8", "replace")


class RemoteVerify(Protocol):
    """Runs the verification command on another machine (a Ray node:
    ``engine/hosts/ray_verify.py``); injected into the verifier by ``engine/wiring.py``, so
    this layer never imports the hosts. Cancelling the call must end the remote process
    group; an infrastructure failure (a node lost, git failing) returns an ``error`` result."""

    name: str  # the host, for the log

    async def __call__(self, commit: str, command: str, timeout: float,
                       max_output_bytes: int) -> VerificationResult: ...


def timeout_note(timeout: float) -> str:
    return f"\n[verification timed out after {timeout:g}s; process group killed]\n"


def remote_result(output: str, exit_code: int | None, duration_s: float, timed_out: bool,
                  timeout: float, reports: dict[str, bytes], host: str) -> VerificationResult:
    """A run elsewhere, as :func:`run_verification` would have reported it: ``reports`` are
    the files the runner left in its results folder (``pytest.xml``, ``junit.xml``: see
    ``testresults.py``), read by the same code as a local run's."""
    if timed_out:
        return VerificationResult("timeout", None, output + timeout_note(timeout), duration_s,
                                  host=host)
    results_dir = Path(tempfile.mkdtemp(prefix="mc-results-"))
    try:
        for name, content in reports.items():
            if name in (PYTEST_FILE, JUNIT_FILE):
                (results_dir / name).write_bytes(content)
        tests = read_results(results_dir, output, exit_code)
    finally:
        shutil.rmtree(results_dir, ignore_errors=True)
    status = "passed" if exit_code == 0 else "failed"
    return VerificationResult(status, exit_code, output, duration_s, tests, host)


def _kill_group(pid: int, sig: int = signal.SIGKILL) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


async def _pump(stream: ByteReceiveStream, sink: BoundedOutput) -> None:
    try:
        async for chunk in stream:
            sink.feed(chunk)
    except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
        pass


def verification_env() -> dict[str, str]:
    """mc's environment without git's redirecting variables; bytecode caches kept out of
    the worktree (``engine/bytecode.py``)."""
    env = {k: v for k, v in os.environ.items() if k not in REDIRECTING_VARS}
    keep_bytecode_out(env)
    return env


async def run_verification(
    command: str, cwd: Path, timeout: float, max_output_bytes: int = 65536
) -> VerificationResult:
    """Run ``command`` in ``cwd``; ``passed`` on exit 0, ``timeout`` kills its process group."""
    results_dir = Path(tempfile.mkdtemp(prefix="mc-results-"))  # outside the worktree
    try:
        return await _run(command, cwd, timeout, max_output_bytes, results_dir)
    finally:
        shutil.rmtree(results_dir, ignore_errors=True)


async def _run(command: str, cwd: Path, timeout: float, max_output_bytes: int,
               results_dir: Path) -> VerificationResult:
    started = time.monotonic()
    sink = BoundedOutput(max_output_bytes)
    env = results_env(verification_env(), results_dir)
    argv = ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)
    try:
        argv, pass_fds = supervised(argv, cwd=cwd, env=env, grace=ORPHAN_GRACE_S)
        process = await anyio.open_process(
            argv, cwd=str(cwd), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True, pass_fds=pass_fds,
        )
    except OSError as exc:
        return VerificationResult("error", None, f"cannot start {command!r}: {exc}", 0.0)

    timed_out = False
    try:
        async with anyio.create_task_group() as tg:
            assert process.stdout is not None
            tg.start_soon(_pump, process.stdout, sink)
            with anyio.move_on_after(timeout) as scope:
                await process.wait()
            timed_out = scope.cancelled_caught
            # Kill the timed-out group, or the stragglers of a finished one; the pump then
            # sees EOF. A writer that escaped the group cannot hold us past the drain limit.
            _kill_group(process.pid)
            tg.cancel_scope.deadline = anyio.current_time() + DRAIN_SECONDS
    finally:
        _kill_group(process.pid)
        with anyio.CancelScope(shield=True):
            await process.aclose()

    duration = time.monotonic() - started
    output = sink.text()
    if timed_out:
        return VerificationResult("timeout", None, output + timeout_note(timeout), duration)
    code = process.returncode
    tests = read_results(results_dir, output, code)
    return VerificationResult("passed" if code == 0 else "failed", code, output, duration, tests)

