"""Submodules in mc's worktrees: checked out from the user's own clone (no network), never
staged as deleted by mc, a gitlink deletion caught before review, two moves of one gitlink a
conflict, and mc/green keeps the gitlink. All on real repositories."""

from __future__ import annotations

import shutil
from pathlib import Path

import pygit2
import pytest
from test_git_support import git, open_store

from engine.agents.gitfacts import commit_all as agent_commit_all
from engine.gitops import GitRepo, MergeQueue, WorkspacePool


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def make_super(root: Path, *, init_submodule: bool = True) -> tuple[Path, Path]:
    """A repo ``app`` with submodule ``lib`` (cloned from ``libsrc``, which is then deleted:
    any use of the submodule's URL would fail). Returns (app, a spare clone of libsrc)."""
    libsrc = root / "libsrc"
    libsrc.mkdir(parents=True)
    git(libsrc, "init", "-q", "-b", "main")
    (libsrc / "helper.py").write_text("def helper():\n    return 42\n")
    git(libsrc, "add", "-A")
    git(libsrc, "commit", "-q", "-m", "lib v1")
    app = root / "app"
    app.mkdir()
    git(app, "init", "-q", "-b", "main")
    (app / "README.md").write_text("app\n")
    git(app, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(libsrc), "lib")
    git(app, "add", "-A")
    git(app, "commit", "-q", "-m", "app with lib")
    spare = root / "spare"
    git(root, "clone", "-q", str(libsrc), str(spare))
    if not init_submodule:
        git(app, "submodule", "deinit", "-q", "-f", "lib")
        shutil.rmtree(app / ".git" / "modules")
    shutil.rmtree(libsrc)
    return app, spare


def lib_commit(app: Path, spare: Path, name: str, text: str) -> str:
    """A new commit of the submodule, known to the user's clone (``.git/modules/lib``)."""
    (spare / name).write_text(text)
    git(spare, "add", "-A")
    git(spare, "commit", "-q", "-m", name)
    git(app / "lib", "fetch", "-q", str(spare), "main")
    return git(spare, "rev-parse", "HEAD").strip()


def with_gitlink(app: Path, branch: str, sha: str, parent: str) -> str:
    """A commit on ``branch`` moving the ``lib`` gitlink to ``sha`` (no checkout touched)."""
    repo = pygit2.Repository(str(app))
    base = repo[pygit2.Oid(hex=parent)].peel(pygit2.Commit)
    index = pygit2.Index()
    index.read_tree(base.tree)
    index.add(pygit2.IndexEntry("lib", pygit2.Oid(hex=sha), pygit2.enums.FileMode.COMMIT))
    sig = pygit2.Signature("t", "t@localhost")
    oid = repo.create_commit(None, sig, sig, f"lib -> {sha[:7]}", index.write_tree(repo), [base.id])
    repo.references.create(f"refs/heads/{branch}", oid, force=True)
    return str(oid)


def gitlink(app: Path, rev: str) -> str:
    return git(app, "ls-tree", rev, "lib").strip()


@pytest.mark.anyio
async def test_slots_get_the_submodule_and_leftovers_keep_it(tmp_path: Path) -> None:
    app, spare = make_super(tmp_path)
    repo = GitRepo(app)
    base = repo.ref_head("main")
    pool = WorkspacePool(repo, app / ".git" / "mc" / "pool", size=1)
    ws = await pool.acquire("mc/unit/u1", base)
    assert (ws.path / "lib" / "helper.py").read_text() == "def helper():\n    return 42\n"
    assert git(ws.path, "status", "--porcelain") == ""
    (ws.path / "notes.txt").write_text("n\n")
    sha = pool.commit_all(ws, "leftovers")
    assert sha and gitlink(app, sha).startswith("160000 commit")
    shutil.rmtree(ws.path / "lib")  # an agent wiped the folder: not a deletion of the submodule
    (ws.path / "more.txt").write_text("m\n")
    sha = pool.commit_all(ws, "more leftovers")
    assert sha and gitlink(app, sha) == gitlink(app, base)
    await pool.release(ws)
    # reuse: the next base moves the submodule; an agent's stray file inside it goes
    newer = lib_commit(app, spare, "extra.py", "X = 1\n")
    moved = with_gitlink(app, "moved", newer, base)
    ws = await pool.acquire("mc/unit/u2", base)
    (ws.path / "lib" / "stray.py").write_text("stray\n")
    await pool.release(ws)
    ws = await pool.acquire("mc/unit/u3", moved)
    assert (ws.path / "lib" / "extra.py").exists() and not (ws.path / "lib" / "stray.py").exists()
    assert git(ws.path / "lib", "rev-parse", "HEAD").strip() == newer
    assert git(ws.path, "status", "--porcelain") == ""
    # the user's checkout and config are untouched
    assert git(app, "status", "--porcelain") == ""
    assert str(tmp_path / "libsrc") in git(app, "config", "submodule.lib.url")
    await pool.release(ws)


@pytest.mark.anyio
async def test_an_uninitialised_submodule_is_never_staged_as_deleted(tmp_path: Path) -> None:
    app, _ = make_super(tmp_path, init_submodule=False)
    repo = GitRepo(app)
    base = repo.ref_head("main")
    pool = WorkspacePool(repo, app / ".git" / "mc" / "pool", size=1)
    ws = await pool.acquire("mc/unit/u1", base)
    assert (ws.path / "lib").is_dir() and not any((ws.path / "lib").iterdir())
    assert git(ws.path, "status", "--porcelain") == ""
    (ws.path / "a.txt").write_text("a\n")
    sha = await agent_commit_all(ws.path, "agent leftovers")  # git add -A + commit
    assert sha and gitlink(app, sha) == gitlink(app, base)
    shutil.rmtree(ws.path / "lib")
    (ws.path / "b.txt").write_text("b\n")
    sha = await agent_commit_all(ws.path, "more")
    assert sha and gitlink(app, sha) == gitlink(app, base)
    (ws.path / "c.txt").write_text("c\n")
    sha = pool.commit_all(ws, "mc leftovers")
    assert sha and gitlink(app, sha) == gitlink(app, base)
    await pool.release(ws)


def test_a_deleted_gitlink_is_named_unless_gitmodules_drops_it_too(tmp_path: Path) -> None:
    app, _ = make_super(tmp_path)
    repo = GitRepo(app)
    base = repo.ref_head("main")
    git(app, "checkout", "-q", "-b", "oops")
    git(app, "rm", "-q", "--cached", "lib")
    git(app, "commit", "-q", "-m", "lost lib")
    assert repo.removed_submodules(base, repo.ref_head("oops")) == ["lib"]
    git(app, "checkout", "-q", "-b", "deliberate", base)
    git(app, "submodule", "update", "-q")
    git(app, "rm", "-q", "lib")  # the way to remove a submodule: .gitmodules loses it too
    git(app, "commit", "-q", "-m", "drop lib")
    assert repo.removed_submodules(base, repo.ref_head("deliberate")) == []


@pytest.mark.anyio
async def test_the_queue_verifies_with_the_submodule_and_conflicts_on_two_moves(tmp_path) -> None:
    app, spare = make_super(tmp_path)
    repo = GitRepo(app)
    repo.ensure_green("main")
    base = repo.green_head()
    one = lib_commit(app, spare, "one.py", "ONE = 1\n")
    git(spare, "reset", "-q", "--hard", "HEAD~1")
    two = lib_commit(app, spare, "two.py", "TWO = 2\n")
    with_gitlink(app, "u1", one, base)
    with_gitlink(app, "u2", two, base)
    store, mission = open_store(tmp_path / "db.sqlite")
    queue = MergeQueue(repo, store, mission_id=mission,
                       verify_command="test -f lib/helper.py && test -f lib/one.py",
                       verify_timeout=30, batch_size=2, verify_dir=tmp_path / "verify")
    queue.submit(None, "u1", repo.ref_head("u1"))
    queue.submit(None, "u2", repo.ref_head("u2"))
    outcome = await queue.run_once()
    assert [i.branch for i in outcome.promoted] == ["u1"]
    assert [(i.branch, paths) for i, paths in outcome.conflicts] == [("u2", ["lib"])]
    assert gitlink(app, "mc/green") == f"160000 commit {one}\tlib"


def mc_config(root: Path, app: Path, extra: str = "") -> Path:
    (root / "empty.toml").write_text("")
    path = root / "mission-control.toml"
    path.write_text(f'[target]\npath = "{app}"\nobjective = "x"\n{extra}\n'
                    '[agent]\nbackend = "scripted"\ncassette = "empty.toml"\n')
    return path


def test_preflight_refuses_a_submodule_commit_the_users_clone_lacks(tmp_path: Path) -> None:
    from tests.e2e.conftest import run_mc

    app, spare = make_super(tmp_path)
    (spare / "new.py").write_text("NEW = 1\n")
    git(spare, "add", "-A")
    git(spare, "commit", "-q", "-m", "never fetched into app")
    with_gitlink(app, "main", git(spare, "rev-parse", "HEAD").strip(), git(app, "rev-parse", "HEAD").strip())
    for args in (["validate-config"], ["--no-ui"]):
        out = run_mc(*args, "--config", str(mc_config(tmp_path, app)))
        err = " ".join(out.stderr.split())
        assert out.returncode == 2, out.stdout
        assert "submodule lib:" in err and "does not have" in err
        assert "git submodule update --init lib" in err


def test_preflight_notes_an_uninitialised_submodule_and_includes_selecting_nothing(tmp_path: Path) -> None:
    from tests.e2e.conftest import run_mc

    app, _ = make_super(tmp_path, init_submodule=False)
    out = run_mc("validate-config", "--config",
                 str(mc_config(tmp_path, app, '[worktree]\ninclude = [".env"]\n')))
    text = " ".join(out.stdout.split())
    assert out.returncode == 0, out.stderr
    assert "submodule lib is not initialised" in text
    assert "select no git-ignored file" in text


@pytest.mark.anyio
async def test_a_slot_moved_to_a_commit_without_the_submodule_drops_its_folder(tmp_path) -> None:
    app, _ = make_super(tmp_path)
    repo = GitRepo(app)
    base = repo.ref_head("main")
    git(app, "checkout", "-q", "-b", "nolib")
    git(app, "rm", "-q", "lib")
    git(app, "commit", "-q", "-m", "drop lib")
    pool = WorkspacePool(repo, app / ".git" / "mc" / "pool", size=1)
    ws = await pool.acquire("mc/unit/u1", base)
    assert (ws.path / "lib" / "helper.py").exists()
    await pool.release(ws)
    ws = await pool.acquire("mc/unit/u2", repo.ref_head("nolib"))
    assert not (ws.path / "lib").exists()
    assert git(ws.path, "status", "--porcelain") == ""
    await pool.release(ws)
