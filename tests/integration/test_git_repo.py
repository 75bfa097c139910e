"""GitRepo: opening, the green branch, history and diff queries on a real repository."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from test_git_support import commit_on, git, init_repo

from engine.gitops import GitError, GitRepo, WorkspacePool


@pytest.fixture
def repo(tmp_path: Path) -> GitRepo:
    init_repo(tmp_path / "t", {"a.txt": "one\ntwo\n", "b.txt": "b\n"})
    return GitRepo(tmp_path / "t")


def test_not_a_repository_is_a_user_facing_error(tmp_path: Path) -> None:
    with pytest.raises(GitError, match=f"{tmp_path} is not a git repository"):
        GitRepo(tmp_path)
    with pytest.raises(GitError, match="does not exist"):
        GitRepo(tmp_path / "missing")


def test_subdirectory_of_a_repo_is_not_taken_for_the_repo(repo: GitRepo) -> None:
    (repo.path / "sub").mkdir()
    with pytest.raises(GitError, match="is not a git repository"):
        GitRepo(repo.path / "sub")


def test_ensure_green_creates_once_and_never_moves_it(repo: GitRepo) -> None:
    main = repo.ref_head("main")
    assert repo.ensure_green("main") == main == repo.green_head()
    assert repo.ref_head("mc/working") == main
    newer = commit_on(repo.path, "main", {"c.txt": "c"}, "more")
    assert repo.ensure_green("main") == main  # existing mc/green is not moved
    assert repo.ref_head("main") == newer


def test_missing_base_branch_is_named(repo: GitRepo) -> None:
    with pytest.raises(GitError, match="branch 'trunk' not found"):
        repo.ensure_green("trunk")
    with pytest.raises(GitError, match="mc/green does not exist"):
        repo.green_head()


def test_refs_outside_mc_are_never_moved(repo: GitRepo) -> None:
    repo.ensure_green("main")
    with pytest.raises(GitError, match="only owns refs/heads/mc"):
        repo.set_owned_ref("main", repo.green_head(), "nope")
    git(repo.path, "checkout", "-q", "-b", "mc/green-is-mine")
    git(repo.path, "checkout", "-q", "mc/working")  # the user checked out one of ours
    with pytest.raises(GitError, match="checked out"):
        repo.set_owned_ref("mc/working", repo.green_head(), "nope")


def test_history_queries(repo: GitRepo) -> None:
    base = repo.ref_head("main")
    c1 = commit_on(repo.path, "feature", {"a.txt": "one\nTWO\nthree\n"}, "edit", parent=base)
    c2 = commit_on(repo.path, "feature", {"b.txt": None, "d/new.txt": "n\n"}, "more")
    assert repo.ref_head("feature") == c2 and repo.ref_head("refs/heads/feature") == c2
    assert repo.ref_head("nope") is None
    assert repo.is_ancestor(base, c2) and repo.is_ancestor(c2, c2)
    assert not repo.is_ancestor(c2, base)
    assert repo.commits_between(base, c2) == 2 and repo.commits_between(c1, c2) == 1
    stat = repo.diff_stat(base, c2)
    assert (stat.files, stat.insertions, stat.deletions) == (3, 3, 2)
    assert "3 files changed" in stat.text
    assert repo.changed_paths(base, c2) == ["a.txt", "b.txt", "d/new.txt"]
    text = repo.diff_text(base, c2)
    assert "+TWO" in text and "diff --git a/b.txt b/b.txt" in text
    cut = repo.diff_text(base, c2, max_bytes=40)
    assert len(cut) < 120 and "diff truncated" in cut
    with pytest.raises(GitError, match="unknown revision"):
        repo.is_ancestor("deadbeef" * 5, c2)


def test_changed_paths_are_remembered_for_commits_and_not_for_refs(repo: GitRepo) -> None:
    """Two commit ids always diff the same (memoised; callers get their own list); a branch
    name is diffed where it points now."""
    base = repo.ref_head("main")
    c1 = commit_on(repo.path, "feature", {"a.txt": "1\n"}, "one", parent=base)
    got = repo.changed_paths(base, c1)
    got.append("mutated by a caller")
    assert repo.changed_paths(base, c1) == ["a.txt"]
    assert repo.changed_paths(base, "feature") == ["a.txt"]
    commit_on(repo.path, "feature", {"b.txt": None}, "two")
    assert repo.changed_paths(base, "feature") == ["a.txt", "b.txt"]
    assert repo.changed_paths(base, c1) == ["a.txt"]
    assert repo.diff_stat(base, c1) is repo.diff_stat(base, c1)  # a frozen DiffStat
    assert repo.diff_stat(base, "feature").files == 2
    for _ in range(2):  # ancestry is remembered too, both ways
        assert repo.is_ancestor(base, c1) and not repo.is_ancestor(c1, base)
        assert repo.contains("feature", c1) and not repo.contains(c1, "feature")


def test_delete_branch(repo: GitRepo) -> None:
    commit_on(repo.path, "mc/unit/x", {"x": "x"}, "x", parent=repo.ref_head("main"))
    repo.delete_branch("mc/unit/x")
    assert repo.ref_head("mc/unit/x") is None
    repo.delete_branch("mc/unit/x")  # already gone: no error


def test_clear_stale_locks_removes_only_locks_on_what_mc_owns(repo: GitRepo, tmp_path: Path) -> None:
    green = repo.ensure_green("main")
    git_dir = repo.path / ".git"
    commit_on(repo.path, "mc/unit/u1", {"x": "x"}, "unit", parent=green)
    pool = WorkspacePool(repo, tmp_path / "pool", size=1)
    anyio.run(pool.acquire, "mc/unit/w", green)  # creates worktree mc-slot-0
    git(repo.path, "worktree", "add", "-q", "--detach", str(tmp_path / "mine"), green)
    ours = [git_dir / "refs/heads/mc/green.lock", git_dir / "refs/heads/mc/unit/u1.lock",
            git_dir / "worktrees/mc-slot-0/index.lock", git_dir / "worktrees/mc-slot-0/HEAD.lock"]
    theirs = [git_dir / "refs/heads/main.lock", git_dir / "index.lock",
              git_dir / "worktrees/mine/index.lock"]
    for lock in ours + theirs:
        lock.write_text("")
    newer = commit_on(repo.path, "side", {"y": "y"}, "side", parent=green)
    with pytest.raises(GitError, match="could not move"):  # a stale lock blocks mc/green
        repo.compare_and_swap("mc/green", newer, green, "test")
    notes = repo.clear_stale_locks()
    assert sorted(notes) == sorted(f"removed stale lock {p.relative_to(git_dir)}" for p in ours)
    assert not any(p.exists() for p in ours) and all(p.exists() for p in theirs)
    repo.compare_and_swap("mc/green", newer, green, "test")
    assert repo.green_head() == newer
    assert repo.clear_stale_locks() == []


def test_clear_stale_locks_with_packed_refs_and_no_worktrees(repo: GitRepo) -> None:
    repo.ensure_green("main")
    git(repo.path, "pack-refs", "--all")
    assert not (repo.path / ".git" / "refs" / "heads" / "mc").exists()
    assert repo.clear_stale_locks() == []
