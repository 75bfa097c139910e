"""engine/publish.py in process: a remote that moved on is merged through the queue, verified,
then pushed; when its commits break the verification, that is the reason (real repos)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from engine.publish import publish
from tests.e2e.conftest import git
from tests.integration.mission_support import commit_on_branch, make_controller

PUSH = "[green_branch]\nauto_push = true\n[hitl]\nenabled = false\n"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def setup(tmp_path: Path, their_file: str, their_text: str):  # type: ignore[no-untyped-def]
    controller = make_controller(tmp_path, "", PUSH)
    rt = controller.rt
    assert rt is not None
    origin = tmp_path / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], check=True)
    repo = tmp_path / "repo"
    git(repo, "remote", "add", "origin", str(origin))
    git(repo, "push", "-q", "origin", "main")
    other = tmp_path / "other"
    subprocess.run(["git", "clone", "-q", str(origin), str(other)], check=True)
    (other / their_file).write_text(their_text)
    git(other, "add", "-A")
    git(other, "commit", "-q", "-m", "theirs")
    git(other, "push", "-q", "origin", "main")
    # our verified work on mc/green
    head = commit_on_branch(rt, "mc/unit/u1", rt.repo.green_head(), "app/bye.py",
                            "def bye():\n    return 'bye'\n", "ours")
    rt.queue.submit(None, "mc/unit/u1", head)
    return rt, origin


@pytest.mark.anyio
async def test_a_moved_remote_is_merged_verified_and_pushed(tmp_path: Path) -> None:
    rt, origin = setup(tmp_path, "THEIRS.md", "theirs\n")
    await rt.queue.run_once()
    state = await publish(rt)
    assert state.pushed, state.reason
    assert git(origin, "rev-parse", "main") == rt.repo.green_head()
    files = git(tmp_path / "repo", "ls-tree", "-r", "--name-only", "mc/green").split()
    assert {"THEIRS.md", "app/bye.py"} <= set(files)


@pytest.mark.anyio
async def test_a_remote_that_breaks_the_verification_is_the_reason(tmp_path: Path) -> None:
    broken = 'def greet(name):\n    return "nope"\n'
    rt, origin = setup(tmp_path, "app/greet.py", broken)
    await rt.queue.run_once()
    theirs = git(origin, "rev-parse", "main")
    state = await publish(rt)
    assert not state.pushed
    assert "fail the verification" in state.reason
    assert git(origin, "rev-parse", "main") == theirs  # never forced
