"""Pushing mc/green to a local bare remote: fast-forward only, rejections recorded, rebase on fetch."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from test_git_support import add_unit, commit_on, git, init_repo, open_store

from engine.gitops import GitRepo, MergeQueue, WorkspacePool, fetch_remote, push_green
from engine.gitops.publisher import Publisher


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def setup(tmp_path: Path):
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(remote))
    path = tmp_path / "target"
    init_repo(path)
    git(path, "remote", "add", "origin", str(remote))
    git(path, "push", "-q", "origin", "main")
    repo = GitRepo(path)
    repo.ensure_green("main")
    store, mission = open_store(tmp_path / "mission.db")
    queue = MergeQueue(repo, store, mission_id=mission, verify_command="true", verify_timeout=10,
                       batch_size=4, verify_dir=tmp_path / "verify")
    return tmp_path, remote, repo, store, mission, queue


def _unit(repo: GitRepo, store, mission, queue: MergeQueue, uid: str) -> None:
    head = commit_on(repo.path, f"mc/unit/{uid}", {f"{uid}.txt": uid}, uid, parent=repo.green_head())
    add_unit(store, mission, uid)
    queue.submit(uid, f"mc/unit/{uid}", head)


def _remote_head(remote: Path) -> str:
    return git(remote, "rev-parse", "refs/heads/main").strip()


@pytest.mark.anyio
async def test_push_fast_forwards_the_remote(setup) -> None:
    _, remote, repo, store, mission, queue = setup
    _unit(repo, store, mission, queue, "u1")
    await queue.run_once()
    result = await Publisher(queue).push("origin", "main")
    assert result.ok and not result.rejected
    assert _remote_head(remote) == repo.green_head()
    events = [e.payload for e in store.events_after(0) if e.kind == "push.result"]
    assert events and events[-1]["ok"] is True
    # nothing new: pushing again is a no-op success
    assert (await push_green(repo.path, remote="origin", branch="main")).ok


@pytest.mark.anyio
async def test_rejected_push_is_reported_never_forced_then_rebased_on_the_remote(setup) -> None:
    tmp, remote, repo, store, mission, queue = setup
    # someone else moves the remote on
    other = tmp / "other"
    git(tmp, "clone", "-q", str(remote), str(other))
    (other / "theirs.txt").write_text("theirs\n")
    git(other, "add", "theirs.txt")
    git(other, "commit", "-q", "-m", "theirs")
    git(other, "push", "-q", "origin", "main")
    theirs = _remote_head(remote)

    _unit(repo, store, mission, queue, "u1")
    await queue.run_once()
    result = await Publisher(queue).push("origin", "main")
    assert not result.ok and result.rejected
    assert "rejected" in result.output
    assert _remote_head(remote) == theirs  # never forced
    event = [e.payload for e in store.events_after(0) if e.kind == "push.result"][-1]
    assert event["rejected"] is True and event["ok"] is False

    journal = [e["data"] for e in queue.journal.entries("push") if e["phase"] == "done"]
    assert journal[-1]["rejected"] is True and journal[-1]["ok"] is False

    merge_id = await Publisher(queue).absorb_remote("origin", "main")
    assert merge_id is not None
    outcome = await queue.run_once()
    assert [i.merge_id for i in outcome.promoted] == [merge_id]
    assert repo.is_ancestor(theirs, repo.green_head())
    verified = {v["commit_sha"] for v in store.rows("verifications", "status = 'passed'")}
    assert repo.green_head() in verified  # the remote came in through verification
    # the next epoch's workspaces start from mc/green, which now holds the remote's work
    pool = WorkspacePool(repo, tmp / "pool", size=1)
    ws = await pool.acquire("mc/unit/next", repo.green_head())
    assert (ws.path / "theirs.txt").read_text() == "theirs\n" and (ws.path / "u1.txt").exists()
    await pool.release(ws)
    assert (await Publisher(queue).push("origin", "main")).ok
    assert _remote_head(remote) == repo.green_head()
    assert await Publisher(queue).absorb_remote("origin", "main") is None  # already in mc/green


@pytest.mark.anyio
async def test_a_remote_that_conflicts_is_reported_and_still_never_forced(setup) -> None:
    tmp, remote, repo, store, mission, queue = setup
    other = tmp / "other"
    git(tmp, "clone", "-q", str(remote), str(other))
    (other / "u1.txt").write_text("their version\n")
    git(other, "add", "u1.txt")
    git(other, "commit", "-q", "-m", "theirs")
    git(other, "push", "-q", "origin", "main")
    theirs = _remote_head(remote)
    _unit(repo, store, mission, queue, "u1")  # writes u1.txt too: a conflict
    await queue.run_once()
    green = repo.green_head()
    assert (await Publisher(queue).push("origin", "main")).rejected
    merge_id = await Publisher(queue).absorb_remote("origin", "main")
    outcome = await queue.run_once()
    assert [(i.merge_id, paths) for i, paths in outcome.conflicts] == [(merge_id, ["u1.txt"])]
    assert store.get("merges", merge_id)["status"] == "conflict"
    assert repo.green_head() == green
    assert (await Publisher(queue).push("origin", "main")).rejected
    assert _remote_head(remote) == theirs


@pytest.mark.anyio
async def test_fetch_remote(setup) -> None:
    _, remote, repo, *_ = setup
    assert await fetch_remote(repo.path, "origin", "main") == _remote_head(remote)
    assert await fetch_remote(repo.path, "origin", "no-such-branch") is None
    assert await fetch_remote(repo.path, "nowhere", "main") is None


def test_push_to_a_missing_remote_fails_without_claiming_rejection(setup) -> None:
    _, _, repo, *_ = setup
    result = anyio.run(lambda: push_green(repo.path, remote="nowhere", branch="main"))
    assert not result.ok and not result.rejected and result.output
