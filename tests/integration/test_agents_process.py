"""Process control with real subprocesses: group kill, draining, long lines, cancellation."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import anyio
import pytest

from engine.agents.process import Line, build_env, run_streaming

ESCAPE_ARTIST = r'''
import os, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)     # the leader ignores SIGTERM
if os.fork() == 0:
    if os.fork() == 0:                            # a grandchild that ignores it too
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("grandchild", os.getpid(), flush=True)
        time.sleep(300)
        os._exit(0)
    print("child", os.getpid(), flush=True)       # a child with default handling
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    time.sleep(300)
    os._exit(0)
print("leader", os.getpid(), flush=True)
time.sleep(300)
'''


def alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return stat[stat.rfind(")") + 2] not in "ZX"


def collect() -> tuple[list[Line], callable]:
    lines: list[Line] = []
    return lines, lines.append


def pids_from(lines: list[Line]) -> dict[str, int]:
    out = {}
    for line in lines:
        parts = line.text.split()
        if len(parts) == 2 and parts[1].isdigit():
            out[parts[0]] = int(parts[1])
    return out


def test_timeout_kills_the_whole_group(tmp_path: Path) -> None:
    lines, on_line = collect()

    async def main() -> object:
        return await run_streaming([sys.executable, "-c", ESCAPE_ARTIST], cwd=tmp_path,
                                   env=build_env(), on_line=on_line, timeout=1.0, kill_grace=0.5)

    started = time.monotonic()
    outcome = anyio.run(main)
    assert time.monotonic() - started < 6
    assert outcome.timed_out and outcome.killed
    pids = pids_from(lines)
    assert set(pids) == {"leader", "child", "grandchild"}
    for name, pid in pids.items():
        assert not alive(pid), f"{name} {pid} survived"


def test_leader_exit_does_not_wait_for_a_grandchild_holding_the_pipe(tmp_path: Path) -> None:
    lines, on_line = collect()
    script = "sleep 300 & echo bg $!; echo done"

    async def main() -> object:
        return await run_streaming(["/bin/sh", "-c", script], cwd=tmp_path, env=build_env(),
                                   on_line=on_line, timeout=30, kill_grace=0.5)

    started = time.monotonic()
    outcome = anyio.run(main)
    assert time.monotonic() - started < 5
    assert outcome.exit_code == 0 and not outcome.timed_out
    assert [line.text for line in lines if line.stream == "stdout"][-1] == "done"
    assert not alive(pids_from(lines)["bg"])


def test_cancellation_kills_the_group(tmp_path: Path) -> None:
    lines, on_line = collect()

    async def main() -> None:
        with anyio.move_on_after(1.0):
            await run_streaming([sys.executable, "-c", ESCAPE_ARTIST], cwd=tmp_path,
                                env=build_env(), on_line=on_line, timeout=60, kill_grace=0.3)

    anyio.run(main)
    pids = pids_from(lines)
    assert len(pids) == 3
    assert not any(alive(pid) for pid in pids.values())


def test_chatty_stderr_does_not_deadlock(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "for i in range(2000):\n"
        "    sys.stderr.write('e' * 3000 + '\\n')\n"   # ~6 MB of stderr
        "    if i % 2 == 0: print('out', i, flush=True)\n"
    )
    lines, on_line = collect()

    async def main() -> object:
        return await run_streaming([sys.executable, "-c", script], cwd=tmp_path, env=build_env(),
                                   on_line=on_line, timeout=30, kill_grace=0.5)

    outcome = anyio.run(main)
    assert outcome.exit_code == 0 and not outcome.timed_out
    stdout = [line.text for line in lines if line.stream == "stdout"]
    assert len(stdout) == 1000 and stdout[-1] == "out 1998"
    assert sum(1 for line in lines if line.stream == "stderr") == 2000
    assert len(outcome.stderr_tail) <= 8000


def test_huge_line_and_invalid_utf8_keep_the_rest(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "w = sys.stdout.buffer.write\n"
        "w(b'first\\n' + b'x' * (2 * 1024 * 1024) + b'\\n')\n"
        "w(b'bad \\xff\\xfe utf8 \\xc3\\x28\\n')\n"
        "w(b'last line without newline')\n"
    )
    lines, on_line = collect()

    async def main() -> object:
        return await run_streaming([sys.executable, "-c", script], cwd=tmp_path, env=build_env(),
                                   on_line=on_line, timeout=30, max_line_bytes=1024 * 1024)

    outcome = anyio.run(main)
    stdout = [line for line in lines if line.stream == "stdout"]
    assert [line.text[:5] for line in stdout] == ["first", "xxxxx", "bad \ufffd", "last "]
    huge = stdout[1]
    assert huge.truncated and huge.size == 2 * 1024 * 1024 and len(huge.text) == 1024 * 1024
    assert "\ufffd" in stdout[2].text and stdout[3].text == "last line without newline"
    assert outcome.truncated_lines == 1


def test_prompt_goes_to_stdin(tmp_path: Path) -> None:
    lines, on_line = collect()
    big = "y" * 300_000 + "\nend"

    async def main() -> object:
        return await run_streaming(
            [sys.executable, "-c", "import sys; d = sys.stdin.read(); print(len(d), d[-3:])"],
            cwd=tmp_path, env=build_env(), on_line=on_line, stdin=big.encode(), timeout=30)

    anyio.run(main)
    assert lines[0].text == f"{len(big)} end"


def test_missing_executable_raises(tmp_path: Path) -> None:
    async def main() -> None:
        await run_streaming(["/nonexistent/tool"], cwd=tmp_path, env=build_env(),
                            on_line=lambda line: None, timeout=5)

    with pytest.raises(OSError):
        anyio.run(main)


def test_a_silent_process_is_ended_at_the_stall_limit_with_its_group(tmp_path: Path) -> None:
    """Silence for ``stall_timeout`` ends the whole group long before ``timeout``; a process
    that keeps printing (stdout or stderr) is never stalled, however long it runs."""
    lines: list[Line] = []
    started = time.monotonic()
    outcome = anyio.run(lambda: run_streaming(
        [sys.executable, "-c", ESCAPE_ARTIST], cwd=tmp_path, env=build_env(),
        on_line=lines.append, timeout=60, kill_grace=0.3, stall_timeout=0.8))
    assert outcome.stalled and not outcome.timed_out
    assert time.monotonic() - started < 6
    pids = [int(line.text.split()[1]) for line in lines]
    assert len(pids) == 3 and not any(alive(pid) for pid in pids)

    chatty = ("import sys, time\nfor i in range(8):\n"
              "    print(i, file=sys.stderr if i % 2 else sys.stdout, flush=True)\n"
              "    time.sleep(0.25)\n")
    outcome = anyio.run(lambda: run_streaming(
        [sys.executable, "-c", chatty], cwd=tmp_path, env=build_env(),
        on_line=lambda _line: None, timeout=60, stall_timeout=0.8))
    assert not outcome.stalled and outcome.exit_code == 0
