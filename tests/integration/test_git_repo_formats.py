"""Repository formats libgit2 only partly reads: a sparse index in the user's checkout, a split
index written by git in mc's own worktrees. Diffs and merges never read the user's index; a
worktree index git wrote in a form libgit2 cannot read is rewritten with the git CLI."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from test_git_support import commit_on, git, init_repo, open_store

from engine.gitops import GitRepo, MergeQueue, WorkspacePool


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def sparse(tmp_path: Path) -> GitRepo:
    """A target whose own checkout has a sparse index (extension ``sdir``)."""
    path = tmp_path / "t"
    init_repo(path, {"a/x.txt": "1\n2\n3\n4\n5\n6\n", "b/y.txt": "y\n", "top.txt": "top\n"})
    git(path, "sparse-checkout", "set", "--sparse-index", "a")
    assert b"sdir" in (path / ".git" / "index").read_bytes()
    return GitRepo(path)


def test_diffs_do_not_read_a_sparse_index(sparse: GitRepo) -> None:
    base = sparse.ref_head("main")
    head = commit_on(sparse.path, "feature", {"b/y.txt": "y2\n", "c.txt": "c\n"}, "f", parent=base)
    stat = sparse.diff_stat(base, head)
    assert (stat.files, stat.insertions, stat.deletions) == (2, 2, 1)
    assert "+y2" in sparse.diff_text(base, head)
    assert sparse.changed_paths(base, head) == ["b/y.txt", "c.txt"]


@pytest.mark.anyio
async def test_merges_of_the_same_file_do_not_read_a_sparse_index(sparse: GitRepo, tmp_path) -> None:
    sparse.ensure_green("main")
    base = sparse.green_head()
    # two branches change the same file in different places (a content merge), a third conflicts
    one = commit_on(sparse.path, "u1", {"a/x.txt": "one\n2\n3\n4\n5\n6\n"}, "u1", parent=base)
    two = commit_on(sparse.path, "u2", {"a/x.txt": "1\n2\n3\n4\n5\nsix\n"}, "u2", parent=base)
    three = commit_on(sparse.path, "u3", {"a/x.txt": "uno\n2\n3\n4\n5\n6\n"}, "u3", parent=base)
    store, mission = open_store(tmp_path / "db.sqlite")
    queue = MergeQueue(sparse, store, mission_id=mission, verify_command="true",
                       verify_timeout=30, batch_size=3, verify_dir=tmp_path / "verify")
    for name, head in (("u1", one), ("u2", two), ("u3", three)):
        queue.submit(None, name, head)
    outcome = await queue.run_once()
    assert [i.branch for i in outcome.promoted] == ["u1", "u2"]
    assert [(i.branch, paths) for i, paths in outcome.conflicts] == [("u3", ["a/x.txt"])]
    assert git(sparse.path, "show", "mc/green:a/x.txt") == "one\n2\n3\n4\n5\nsix\n"


@pytest.mark.anyio
async def test_a_split_index_git_wrote_in_a_slot_is_read(tmp_path: Path) -> None:
    path = tmp_path / "t"
    base = init_repo(path, {"a.txt": "a\n"})
    git(path, "config", "core.splitIndex", "true")  # every worktree's index gets split by git
    repo = GitRepo(path)
    pool = WorkspacePool(repo, path / ".git" / "mc" / "pool", size=1)
    ws = await pool.acquire("mc/unit/u1", base)
    (ws.path / "b.txt").write_text("b\n")
    git(ws.path, "add", "b.txt")  # git writes a split index (extension ``link``)
    assert b"link" in (path / ".git" / "worktrees" / "mc-slot-0" / "index").read_bytes()
    (ws.path / "c.txt").write_text("c\n")
    sha = pool.commit_all(ws, "leftovers")
    assert sha is not None
    assert git(path, "ls-tree", "-r", "--name-only", sha).split() == ["a.txt", "b.txt", "c.txt"]
    await pool.release(ws)
    git(ws.path, "checkout", "-q", "--detach", sha)
    git(ws.path, "update-index", "--split-index")
    ws = await pool.acquire("mc/unit/u2", base)  # the clean checkout reads the slot's index
    assert sorted(p.name for p in ws.path.iterdir() if p.name != ".git") == ["a.txt"]
    await anyio.sleep(0)


@pytest.mark.parametrize(("setup", "named"), [
    (["init", "-q", "--object-format=sha256"], "SHA-256 object format"),
    (["config", "extensions.partialClone", "origin"], "partial clone"),
    (["config", "extensions.refStorage", "reftable"], "reftable"),
])
def test_a_format_libgit2_cannot_open_is_named(tmp_path: Path, setup: list[str], named: str) -> None:
    from tests.e2e.conftest import run_mc

    path = tmp_path / "t"
    path.mkdir()
    git(path, "init", "-q")
    if setup[0] == "init":
        git(path, "init", "-q", "--object-format=sha256", str(path / "sub"))
        path = path / "sub"
    else:
        git(path, "config", "core.repositoryFormatVersion", "1")
        git(path, *setup)
    config = tmp_path / "mission-control.toml"
    config.write_text(f'[target]\npath = "{path}"\nobjective = "x"\n')
    result = run_mc("--config", str(config), "--no-ui")
    assert result.returncode == 2, result.stdout + result.stderr
    assert named in result.stderr and "is not a git repository" not in result.stderr


@pytest.mark.anyio
async def test_merge_drivers_come_from_the_tree_not_the_users_checkout(tmp_path: Path) -> None:
    path = tmp_path / "t"
    init_repo(path, {"CHANGELOG": "start\n", ".gitattributes": "CHANGELOG merge=union\n",
                     "a/x.txt": "x\n"})
    git(path, "sparse-checkout", "set", "--sparse-index", "a")
    repo = GitRepo(path)
    repo.ensure_green("main")
    base = repo.green_head()
    one = commit_on(path, "u1", {"CHANGELOG": "start\none\n"}, "u1", parent=base)
    two = commit_on(path, "u2", {"CHANGELOG": "start\ntwo\n"}, "u2", parent=base)
    store, mission = open_store(tmp_path / "db.sqlite")
    queue = MergeQueue(repo, store, mission_id=mission, verify_command="true",
                       verify_timeout=30, batch_size=2, verify_dir=tmp_path / "verify")
    queue.submit(None, "u1", one)
    queue.submit(None, "u2", two)
    outcome = await queue.run_once()
    assert [i.branch for i in outcome.promoted] == ["u1", "u2"]  # merge=union: no conflict
    assert git(path, "show", "mc/green:CHANGELOG") == "start\none\ntwo\n"
