"""Worktree includes on real repositories: git-ignored files (``.env``) copied from the user's
checkout into pool slots and the verify worktree, refreshed on acquire, never committed."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_git_support import git, init_repo, open_store

from engine.agents.gitfacts import commit_all as agent_commit_all
from engine.gitops import GitRepo, MergeQueue, WorkspacePool
from engine.gitops.includes import included_files


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def target(tmp_path: Path) -> Path:
    path = tmp_path / "t"
    init_repo(path, {"a.txt": "a\n", ".gitignore": ".env\n*.local\nbuild/\n", "sub/b.txt": "b\n"})
    (path / ".env").write_text("TOKEN=one\n")
    (path / "sub" / "x.local").write_text("local\n")
    (path / "y.local").write_text("y\n")
    (path / "build").mkdir()
    (path / "build" / "out.bin").write_text("big\n")
    (path / "notes.txt").write_text("untracked, not ignored: never copied\n")
    return path


def test_which_files_are_included(target: Path) -> None:
    assert included_files(target, []) == []
    assert included_files(target, [".env", "notes.txt", "a.txt"]) == [".env"]  # ignored only
    assert included_files(target, ["*.local"]) == ["y.local"]  # config globs: from the root
    (target / ".worktreeinclude").write_text("# gitignore-style\n*.local\n!y.local\n")
    assert included_files(target, [".env"]) == [".env", "sub/x.local"]


@pytest.mark.anyio
async def test_slots_get_included_files_refreshed_and_never_committed(target: Path) -> None:
    repo = GitRepo(target)
    base = repo.ref_head("main")
    pool = WorkspacePool(repo, target / ".git" / "mc" / "pool", size=1, include=[".env", "*.local"])
    ws = await pool.acquire("mc/unit/u1", base)
    assert (ws.path / ".env").read_text() == "TOKEN=one\n"
    assert (ws.path / "y.local").exists() and not (ws.path / "build").exists()
    assert not (ws.path / "notes.txt").exists()
    assert git(ws.path, "status", "--porcelain") == ""
    # an agent un-ignores .env and commits everything: mc's commits still leave it out
    (ws.path / ".gitignore").write_text("*.local\n")
    sha = await agent_commit_all(ws.path, "agent leftovers")
    assert sha and ".env" not in git(target, "ls-tree", "-r", "--name-only", sha)
    (ws.path / "c.txt").write_text("c\n")
    sha = pool.commit_all(ws, "mc leftovers")
    assert sha and ".env" not in git(target, "ls-tree", "-r", "--name-only", sha)
    await pool.release(ws)
    (target / ".env").write_text("TOKEN=two, longer\n")
    (target / "y.local").unlink()
    ws = await pool.acquire("mc/unit/u2", base)
    assert (ws.path / ".env").read_text() == "TOKEN=two, longer\n"  # refreshed
    assert not (ws.path / "y.local").exists()  # no longer in the checkout: removed
    assert git(target, "status", "--porcelain") == "?? notes.txt\n"  # the user's checkout as it was
    await pool.release(ws)


@pytest.mark.anyio
async def test_the_verify_worktree_gets_them_too(target: Path, tmp_path: Path) -> None:
    repo = GitRepo(target)
    repo.ensure_green("main")
    store, mission = open_store(tmp_path / "db.sqlite")
    queue = MergeQueue(repo, store, mission_id=mission, verify_command="grep -q TOKEN=one .env",
                       verify_timeout=30, batch_size=1, verify_dir=tmp_path / "verify",
                       include=[".env"])
    git(target, "branch", "u1", "main")
    from test_git_support import commit_on

    queue.submit(None, "u1", commit_on(target, "u1", {"c.txt": "c\n"}, "c"))
    outcome = await queue.run_once()
    assert [i.branch for i in outcome.promoted] == ["u1"]
    assert ".env" not in git(target, "ls-tree", "-r", "--name-only", "mc/green")
