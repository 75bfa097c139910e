"""The worktree pool on real repositories: reuse, cleaning, waiting, commit_all, repair."""

from __future__ import annotations

import shutil
from pathlib import Path

import anyio
import pygit2
import pytest
from test_git_support import commit_on, git, init_repo

from engine.gitops import GitError, GitRepo, WorkspacePool


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def target(tmp_path: Path) -> tuple[GitRepo, str, str]:
    path = tmp_path / "target"
    c1 = init_repo(path, {"a.txt": "a1\n", "dir/b.txt": "b1\n", ".gitignore": "*.cache\n"})
    c2 = commit_on(path, "main", {"a.txt": "a2\n", "dir/new.txt": "new\n"}, "second")
    return GitRepo(path), c1, c2


def pool_dir_of(repo: GitRepo) -> Path:
    return repo.path / ".git" / "mc" / "pool"  # the old default; the mechanics do not depend on it


@pytest.mark.anyio
async def test_acquire_gives_a_clean_workspace_on_a_fresh_branch(target) -> None:
    repo, c1, c2 = target
    pool = WorkspacePool(repo, pool_dir_of(repo), size=2)
    ws = await pool.acquire("mc/unit/u-1", c1)
    assert ws.path == pool.slot_path(ws.slot).resolve() and ws.slot == 0
    assert (ws.path / "a.txt").read_text() == "a1\n"
    assert not (ws.path / "dir" / "new.txt").exists()
    assert repo.ref_head("mc/unit/u-1") == c1
    assert git(ws.path, "rev-parse", "--abbrev-ref", "HEAD").strip() == "mc/unit/u-1"
    assert git(ws.path, "status", "--porcelain") == ""
    assert pool.head(ws) == c1
    # git sees it as one of the target's worktrees
    assert str(ws.path) in git(repo.path, "worktree", "list")
    await pool.release(ws)


@pytest.mark.anyio
async def test_reuse_moves_to_the_new_base_and_removes_strays(target) -> None:
    repo, c1, c2 = target
    pool = WorkspacePool(repo, pool_dir_of(repo), size=1)
    ws = await pool.acquire("mc/unit/a", c1)
    (ws.path / "a.txt").write_text("edited by an agent\n")
    (ws.path / "stray.txt").write_text("left behind\n")
    (ws.path / "newdir" / "deep").mkdir(parents=True)
    (ws.path / "newdir" / "deep" / "x.py").write_text("x\n")
    (ws.path / "build.cache").write_text("ignored cache is kept\n")
    git(ws.path, "add", "stray.txt")  # even staged files go
    await pool.release(ws)
    again = await pool.acquire("mc/unit/b", c2)
    assert again.path == ws.path  # the same worktree, reused
    assert (again.path / "a.txt").read_text() == "a2\n"
    assert (again.path / "dir" / "new.txt").read_text() == "new\n"
    assert not (again.path / "stray.txt").exists() and not (again.path / "newdir").exists()
    assert (again.path / "build.cache").exists()
    assert git(again.path, "status", "--porcelain") == ""
    assert repo.ref_head("mc/unit/b") == c2
    assert repo.ref_head("mc/unit/a") == c1  # released branch kept for the merge queue
    await pool.release(again)


@pytest.mark.anyio
async def test_acquire_force_recreates_an_existing_branch(target) -> None:
    repo, c1, c2 = target
    pool = WorkspacePool(repo, pool_dir_of(repo), size=1)
    ws = await pool.acquire("mc/unit/x", c2)
    await pool.release(ws)
    ws = await pool.acquire("mc/unit/x", c1)
    assert repo.ref_head("mc/unit/x") == c1
    await pool.release(ws)


@pytest.mark.anyio
async def test_acquire_waits_when_all_slots_are_busy(target) -> None:
    repo, c1, _ = target
    pool = WorkspacePool(repo, pool_dir_of(repo), size=1)
    first = await pool.acquire("mc/unit/1", c1)
    order: list[str] = []

    async def second() -> None:
        ws = await pool.acquire("mc/unit/2", c1)
        order.append("second acquired")
        await pool.release(ws)

    async with anyio.create_task_group() as tg:
        tg.start_soon(second)
        await anyio.sleep(0.2)
        order.append("releasing first")
        await pool.release(first)
    assert order == ["releasing first", "second acquired"]


@pytest.mark.anyio
async def test_slots_are_created_on_demand_up_to_size(target) -> None:
    repo, c1, _ = target
    pool = WorkspacePool(repo, pool_dir_of(repo), size=3)
    a = await pool.acquire("mc/unit/a", c1)
    b = await pool.acquire("mc/unit/b", c1)
    assert {a.slot, b.slot} == {0, 1}
    assert not pool.slot_path(2).exists()
    await pool.release(a)
    c = await pool.acquire("mc/unit/c", c1)
    assert c.slot == 0  # an existing free slot is preferred
    await pool.release(b)
    await pool.release(c)


@pytest.mark.anyio
async def test_commit_all_commits_leftovers_as_mc_agent(target) -> None:
    repo, c1, _ = target
    pool = WorkspacePool(repo, pool_dir_of(repo), size=1)
    ws = await pool.acquire("mc/unit/w", c1)
    assert pool.commit_all(ws, "nothing") is None
    (ws.path / "work.py").write_text("print('hi')\n")
    (ws.path / "a.txt").unlink()
    sha = pool.commit_all(ws, "mc: leftovers")
    assert sha is not None and pool.head(ws) == sha == repo.ref_head("mc/unit/w")
    commit = repo.pygit[pygit2.Oid(hex=sha)]
    assert commit.author.name == "mc-agent" and commit.message == "mc: leftovers"
    assert repo.changed_paths(c1, sha) == ["a.txt", "work.py"]
    await pool.release(ws)


@pytest.mark.anyio
async def test_unknown_base_commit_is_a_git_error_and_frees_the_slot(target) -> None:
    repo, c1, _ = target
    pool = WorkspacePool(repo, pool_dir_of(repo), size=1)
    with pytest.raises(GitError, match="not found"):
        await pool.acquire("mc/unit/bad", "0" * 40)
    ws = await pool.acquire("mc/unit/good", c1)  # the slot was given back
    await pool.release(ws)


@pytest.mark.anyio
async def test_repair_prunes_and_repairs_stale_worktrees(target) -> None:
    repo, c1, _ = target
    pool_dir = pool_dir_of(repo)
    pool = WorkspacePool(repo, pool_dir, size=3)
    slots = [await pool.acquire(f"mc/unit/{i}", c1) for i in range(3)]
    (slots[2].path / "junk").write_text("x")
    # a crash: no release; slot 0 deleted from disk, slot 1's .git link broken,
    # a stray directory, and a stale index.lock in slot 2's git dir
    shutil.rmtree(slots[0].path)
    (slots[1].path / ".git").write_text("gitdir: /nonexistent\n")
    (pool_dir / "slot-9").mkdir()
    lock = repo.path / ".git" / "worktrees" / "mc-slot-2" / "index.lock"
    lock.write_text("")
    fresh = WorkspacePool(repo, pool_dir, size=3)
    notes = fresh.repair()
    text = "\n".join(notes)
    assert "pruned stale worktree mc-slot-0" in text
    assert "removed broken worktree mc-slot-1" in text
    assert "removed stale index.lock of mc-slot-2" in text
    assert "removed stray directory" in text and not (pool_dir / "slot-9").exists()
    assert not lock.exists()
    assert "mc-slot-0" not in repo.pygit.list_worktrees()
    # the kept slot no longer holds its branch, so it can be force-moved
    assert not repo.pygit.branches.local["mc/unit/2"].is_checked_out()
    for i in range(3):
        ws = await fresh.acquire(f"mc/unit/again-{i}", c1)
        assert git(ws.path, "status", "--porcelain") == ""
    git(repo.path, "worktree", "prune")
    assert git(repo.path, "worktree", "list").count("mc/pool") == 3


@pytest.mark.anyio
async def test_repair_prunes_slots_beyond_a_smaller_pool(target) -> None:
    repo, c1, _ = target
    pool = WorkspacePool(repo, pool_dir_of(repo), size=2)
    a = await pool.acquire("mc/unit/a", c1)
    b = await pool.acquire("mc/unit/b", c1)
    await pool.release(a)
    await pool.release(b)
    notes = WorkspacePool(repo, pool_dir_of(repo), size=1).repair()
    assert any("mc-slot-1" in n and "no longer part" in n for n in notes)
    assert repo.pygit.list_worktrees() == ["mc-slot-0"]
    assert not pool.slot_path(1).exists()


def test_repair_leaves_the_users_own_worktrees_alone(target, tmp_path: Path) -> None:
    repo, c1, _ = target
    mine = tmp_path / "my-worktree"
    git(repo.path, "worktree", "add", "-q", "-b", "mine", str(mine), c1)
    notes = WorkspacePool(repo, pool_dir_of(repo), size=1).repair()
    assert notes == []
    assert mine.exists() and "my-worktree" in git(repo.path, "worktree", "list")


def half_register(repo: GitRepo, pool_dir: Path, slot: int) -> Path:
    """What a kill inside `git worktree add` leaves: a registration with no HEAD."""
    gitdir = repo.path / ".git" / "worktrees" / f"mc-slot-{slot}"
    gitdir.mkdir(parents=True)
    (gitdir / "commondir").write_text("../..\n")
    (gitdir / "gitdir").write_text(f"{pool_dir / f'slot-{slot}' / '.git'}\n")
    return gitdir


@pytest.mark.anyio
async def test_a_half_registered_worktree_is_cleared_and_the_slot_recreated(target) -> None:
    """kill -9 inside `add_worktree`: `.git/worktrees/<name>` holds only commondir and gitdir.

    libgit2 does not list such a registration, so it must be found on disk; before the fix
    the next acquire of that slot failed and the fixup round using it crashed.
    """
    repo, c1, _ = target
    pool_dir = pool_dir_of(repo)
    gitdir = half_register(repo, pool_dir, 0)
    (pool_dir / "slot-0").mkdir(parents=True)
    assert "mc-slot-0" not in repo.pygit.list_worktrees()
    pool = WorkspacePool(repo, pool_dir, size=1)
    notes = pool.repair()
    assert any("half-created worktree mc-slot-0" in n for n in notes), notes
    assert not gitdir.exists()
    ws = await pool.acquire("mc/unit/after-crash", c1)
    assert git(ws.path, "status", "--porcelain") == ""
    assert git(ws.path, "rev-parse", "HEAD").strip() == c1


@pytest.mark.anyio
@pytest.mark.parametrize("linked", [False, True], ids=["unlisted", "listed-with-a-bad-head"])
async def test_acquire_recreates_a_slot_over_a_half_registered_worktree(target, linked: bool) -> None:
    """Even without a repair, creating a slot clears a stale registration of the same name.

    With a HEAD written too (but not a valid one) libgit2 lists the registration.
    """
    repo, c1, _ = target
    pool_dir = pool_dir_of(repo)
    gitdir = half_register(repo, pool_dir, 0)
    if linked:
        (gitdir / "HEAD").write_text("garbage\n")
        (pool_dir / "slot-0").mkdir(parents=True)
        (pool_dir / "slot-0" / ".git").write_text(f"gitdir: {gitdir}\n")
        assert "mc-slot-0" in repo.pygit.list_worktrees()
    ws = await WorkspacePool(repo, pool_dir, size=1).acquire("mc/unit/x", c1)
    assert git(ws.path, "rev-parse", "HEAD").strip() == c1
    notes = WorkspacePool(repo, pool_dir, size=1).repair()
    assert notes == ["kept worktree mc-slot-0 for reuse"]


@pytest.mark.anyio
async def test_uncommitted_work_of_a_killed_agent_is_saved_on_its_branch(target) -> None:
    repo, c1, _ = target
    pool_dir = pool_dir_of(repo)
    pool = WorkspacePool(repo, pool_dir, size=3)
    mine = await pool.acquire("mc/unit/u1", c1)
    other = await pool.acquire("mc/unit/u2", c1)
    clean = await pool.acquire("mc/unit/u3", c1)
    (mine.path / "a.txt").write_text("half done\n")
    (mine.path / "new.txt").write_text("new\n")
    (mine.path / "x.cache").write_text("ignored\n")
    (other.path / "a.txt").write_text("not ours to save\n")
    # the process dies here: no release. At start-up, before repair:
    fresh = WorkspacePool(repo, pool_dir, size=3)
    notes = fresh.save_uncommitted({"mc/unit/u1", "mc/unit/u3"}, "wip: saved")
    assert len(notes) == 1 and "saved the uncommitted work" in notes[0] and "mc/unit/u1" in notes[0]
    tip = repo.ref_head("refs/heads/mc/unit/u1")
    assert git(repo.path, "log", "-1", "--format=%s%n%an", tip).split() == ["wip:", "saved", "mc-agent"]
    assert set(git(repo.path, "diff", "--name-only", c1, tip).split()) == {"a.txt", "new.txt"}
    assert repo.ref_head("refs/heads/mc/unit/u2") == c1  # other branches are left alone
    assert repo.ref_head("refs/heads/mc/unit/u3") == c1  # nothing to save: no commit
    assert git(other.path, "status", "--porcelain").strip() == "M a.txt"
    fresh.repair()
    assert clean.path.exists()


@pytest.mark.anyio
async def test_an_old_pool_inside_git_is_migrated_without_losing_work(target, tmp_path) -> None:
    """Start-up repair of a pool from before the move out of .git: the agent's uncommitted
    work on a unit branch becomes a commit on that branch, the old registrations and folder
    go, the user's checkout is untouched and the new pool works."""
    repo, c1, c2 = target
    old_dir = repo.path / ".git" / "mc" / "pool"
    old = WorkspacePool(repo, old_dir, size=3)
    busy = await old.acquire("mc/unit/u-7", c1)  # killed mid-work: never released
    (busy.path / "a.txt").write_text("agent work in progress\n")
    (busy.path / "fresh.py").write_text("x = 1\n")
    idle = await old.acquire("mc/unit/u-8", c1)
    await old.release(idle)
    old.close()
    user_status = git(repo.path, "status", "--porcelain")

    new_dir = tmp_path / "cache" / "pools" / "target-abc"
    pool = WorkspacePool(repo, new_dir, size=3)
    notes = pool.migrate_from(old_dir, set(), "mc: work saved at the migration")
    assert any("saved the uncommitted work" in n and "mc/unit/u-7" in n for n in notes), notes
    assert any("moved the worktree pool" in n for n in notes)
    saved = repo.ref_head("mc/unit/u-7")
    assert saved != c1
    assert git(repo.path, "show", f"{saved}:a.txt") == "agent work in progress\n"
    assert git(repo.path, "show", f"{saved}:fresh.py") == "x = 1\n"
    assert not old_dir.exists()
    assert ".git/mc/pool" not in git(repo.path, "worktree", "list")
    assert git(repo.path, "status", "--porcelain") == user_status
    pool.repair()
    ws = await pool.acquire("mc/unit/u-7", saved)  # the branch is free to be checked out again
    assert ws.path.is_relative_to(new_dir.resolve()) and (ws.path / "fresh.py").exists()
    await pool.release(ws)
    assert pool.migrate_from(old_dir, set(), "x") == []  # nothing left to move
