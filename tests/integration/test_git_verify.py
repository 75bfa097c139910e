"""run_verification: real subprocesses, process groups, timeouts, bounded output."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from engine.gitops import run_verification
from engine.gitops.verify import BoundedOutput


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie reparented to init counts as gone
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.anyio
async def test_pass_and_fail_keep_exit_code_and_interleaved_output(tmp_path: Path) -> None:
    ok = await run_verification("echo out; echo err >&2", tmp_path, 10)
    assert (ok.status, ok.exit_code) == ("passed", 0)
    assert ok.output == "out\nerr\n" and ok.duration_s >= 0
    bad = await run_verification("pwd; exit 7", tmp_path, 10)
    assert (bad.status, bad.exit_code) == ("failed", 7)
    assert bad.output.strip() == str(tmp_path)


@pytest.mark.anyio
async def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    command = f"sleep 30 & echo $! > {pids}; sh -c 'sleep 30' & echo $! >> {pids}; wait"
    started = time.monotonic()
    result = await run_verification(command, tmp_path, 0.5)
    assert result.status == "timeout" and result.exit_code is None
    assert time.monotonic() - started < 5
    assert "timed out after 0.5s" in result.output
    children = [int(p) for p in pids.read_text().split()]
    assert len(children) == 2
    deadline = time.monotonic() + 2
    while any(_alive(p) for p in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(p) for p in children)


@pytest.mark.anyio
async def test_background_stragglers_do_not_outlive_or_hold_up_a_run(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    started = time.monotonic()
    result = await run_verification(f"sleep 30 & echo $! > {pid_file}; echo done", tmp_path, 20)
    assert result.status == "passed" and "done" in result.output
    assert time.monotonic() - started < 5
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 2
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)


@pytest.mark.anyio
async def test_output_is_bounded_head_and_tail_kept(tmp_path: Path) -> None:
    command = "echo FIRST; yes filler | head -n 100000; echo LAST"
    result = await run_verification(command, tmp_path, 20, max_output_bytes=2048)
    assert result.status == "passed"
    assert result.output.startswith("FIRST\n") and result.output.rstrip().endswith("LAST")
    assert "bytes of output omitted" in result.output
    assert len(result.output) < 2048 + 100


@pytest.mark.anyio
async def test_missing_directory_is_an_error_not_a_crash(tmp_path: Path) -> None:
    result = await run_verification("true", tmp_path / "nope", 5)
    assert result.status == "error" and "cannot start" in result.output


def test_bounded_output_keeps_everything_under_the_limit() -> None:
    sink = BoundedOutput(100)
    for _ in range(10):
        sink.feed(b"0123456789")
    assert sink.text() == "0123456789" * 10
    sink.feed(b"X" * 50)
    text = sink.text()
    assert text.startswith("0123456789" * 2) and text.endswith("X" * 50) and "omitted" in text


def _suite(root: Path) -> Path:
    (root / "tests").mkdir(parents=True)
    (root / "tests" / "__init__.py").write_text("")
    (root / "tests" / "test_x.py").write_text(
        "import unittest\n\n\nclass X(unittest.TestCase):\n"
        "    def test_ok(self):\n        pass\n\n"
        "    def test_bad(self):\n        self.assertEqual(1, 2)\n"
    )
    return root


@pytest.mark.anyio
async def test_pytest_failures_are_read_from_its_junit_xml(tmp_path: Path, monkeypatch) -> None:
    import sys

    root = _suite(tmp_path / "proj")
    monkeypatch.setenv("PYTEST_ADDOPTS", "-p no:cacheprovider")  # the user's own stay in force
    result = await run_verification(f"{sys.executable} -m pytest -q tests", root, 60)
    assert result.status == "failed" and result.exit_code == 1
    assert result.tests.source == "junit" and result.tests.tests == 2
    assert result.failing == {"tests.test_x.X.test_bad"}
    assert not (root / ".pytest_cache").exists()
    assert sorted(p.name for p in root.rglob("*.xml")) == []  # nothing left in the worktree


@pytest.mark.anyio
async def test_unittest_failures_are_read_from_its_output(tmp_path: Path) -> None:
    import sys

    root = _suite(tmp_path / "proj")
    result = await run_verification(f"{sys.executable} -m unittest discover -s tests -t .", root, 60)
    assert result.status == "failed"
    assert result.tests.source == "unittest"
    assert result.failing == {"tests.test_x.X.test_bad"}


@pytest.mark.anyio
async def test_a_command_without_test_results_has_none(tmp_path: Path) -> None:
    result = await run_verification("echo lint error; exit 1", tmp_path, 10)
    assert result.failing is None and result.tests.source == ""


@pytest.mark.anyio
async def test_verification_leaves_no_bytecode_in_the_worktree(tmp_path: Path, monkeypatch) -> None:
    """A verification that imports the project's modules writes no __pycache__ beside them
    (a repo that does not ignore them would otherwise commit .pyc files)."""
    monkeypatch.delenv("PYTHONDONTWRITEBYTECODE", raising=False)
    monkeypatch.delenv("PYTHONPYCACHEPREFIX", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    work = tmp_path / "wt"
    (work / "pkg").mkdir(parents=True)
    (work / "pkg" / "__init__.py").write_text("VALUE = 1\n")
    result = await run_verification("python3 -c 'import pkg; assert pkg.VALUE == 1'", work, 30)
    assert result.status == "passed", result.output
    assert not list(work.rglob("__pycache__")), list(work.rglob("*"))
    assert list((tmp_path / "cache").rglob("*.pyc"))
