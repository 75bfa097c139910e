"""The user's checkout is never touched, and no git identity needs to be configured."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import anyio
from test_git_support import add_unit, git, init_repo, open_store

from engine.gitops import GitRepo, MergeQueue, WorkspacePool
from engine.gitops.publisher import Publisher

CHECK = 'for f in BROKEN*; do [ -e "$f" ] && { echo "broken: $f"; exit 1; }; done; true'


def snapshot(path: Path) -> dict[str, str]:
    """Every byte of the working tree, the index, HEAD and the user's own refs."""
    files: dict[str, str] = {}
    for item in sorted(path.rglob("*")):
        rel = item.relative_to(path).as_posix()
        if rel == ".git" or rel.startswith(".git/"):
            continue
        if item.is_symlink():
            files[rel] = "link:" + os.readlink(item)
        elif item.is_file():
            # content, mode and mtime: a file rewritten with the same bytes is still touched
            info = item.stat()
            files[rel] = (f"{info.st_mode:o}:{info.st_mtime_ns}:"
                          + hashlib.sha256(item.read_bytes()).hexdigest())
        else:
            files[rel] = f"dir:{item.stat().st_mode:o}"
    git_dir = path / ".git"
    files[".git/HEAD"] = (git_dir / "HEAD").read_text()
    index = git_dir / "index"
    files[".git/index"] = f"{index.stat().st_mtime_ns}:" + hashlib.sha256(index.read_bytes()).hexdigest()
    for name in ("ORIG_HEAD", "MERGE_HEAD", "refs/stash", "logs/HEAD"):
        extra = git_dir / name
        files[f".git/{name}"] = extra.read_text() if extra.exists() else "absent"
    refs = git(path, "for-each-ref", "--format=%(refname) %(objectname)", "refs/heads/")
    files["refs"] = "\n".join(r for r in refs.splitlines() if " " in r and "refs/heads/mc/" not in r)
    return files


def test_full_queue_cycle_leaves_a_dirty_checkout_byte_for_byte_unchanged(tmp_path: Path) -> None:
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(remote))
    path = tmp_path / "target"
    init_repo(path, {"app.py": "print('v1')\n", "lib/util.py": "X = 1\n", "notes.txt": "n\n"})
    git(path, "remote", "add", "origin", str(remote))
    git(path, "push", "-q", "origin", "main")
    # the user is on a feature branch with modified, staged and untracked files
    git(path, "checkout", "-q", "-b", "feature/mine")
    (path / "app.py").write_text("print('work in progress')\n")
    (path / "lib" / "util.py").write_text("X = 2\n")
    git(path, "add", "lib/util.py")
    (path / "untracked.txt").write_text("scratch\n")
    (path / "lib" / "new_dir").mkdir()
    (path / "lib" / "new_dir" / "draft.py").write_text("draft\n")
    before = snapshot(path)

    async def cycle() -> None:
        repo = GitRepo(path)
        green = repo.ensure_green("main")
        pool = WorkspacePool(repo, path / ".git" / "mc" / "pool", size=2)
        pool.repair()
        store, mission = open_store(path / ".git" / "mc" / "mission.db")
        queue = MergeQueue(repo, store, mission_id=mission, verify_command=CHECK, verify_timeout=30,
                           batch_size=4, verify_dir=path / ".git" / "mc" / "verify")
        queue.reconcile()
        edits = {"good": {"app.py": "print('v2')\n"}, "clash": {"app.py": "print('other')\n"},
                 "bad": {"BROKEN": "x"}, "more": {"lib/more.py": "Y = 1\n"}}
        for uid, files in edits.items():
            ws = await pool.acquire(f"mc/unit/{uid}", green)
            for name, text in files.items():
                (ws.path / name).parent.mkdir(parents=True, exist_ok=True)
                (ws.path / name).write_text(text)
            head = pool.commit_all(ws, f"unit {uid}")
            assert head is not None
            await pool.release(ws)
            add_unit(store, mission, uid)
            queue.submit(uid, f"mc/unit/{uid}", head)
        outcome = await queue.run_once()
        assert {i.unit_id for i in outcome.promoted} == {"good", "more"}
        assert [i.unit_id for i, _ in outcome.conflicts] == ["clash"]
        assert [i.unit_id for i, _ in outcome.failed] == ["bad"]
        assert (await Publisher(queue).push("origin", "main")).ok
        # the remote moves on: a rejected push, then the remote is fetched and merged in
        other = tmp_path / "other"
        git(tmp_path, "clone", "-q", str(remote), str(other))
        (other / "theirs.txt").write_text("theirs\n")
        git(other, "add", "theirs.txt")
        git(other, "commit", "-q", "-m", "theirs")
        git(other, "push", "-q", "origin", "main")
        ws = await pool.acquire("mc/unit/late", repo.green_head())
        (ws.path / "late.txt").write_text("late\n")
        head = pool.commit_all(ws, "unit late")
        await pool.release(ws)
        add_unit(store, mission, "late")
        queue.submit("late", "mc/unit/late", head)
        await queue.run_once()
        assert (await Publisher(queue).push("origin", "main")).rejected
        assert await Publisher(queue).absorb_remote("origin", "main") is not None
        await queue.run_once()
        assert (await Publisher(queue).push("origin", "main")).ok
        repo.delete_branch("mc/unit/bad")
        (path / ".git" / "refs" / "heads" / "mc" / "green.lock").write_text("")
        assert repo.clear_stale_locks()
        queue.reconcile()
        pool.repair()

    anyio.run(cycle)
    assert snapshot(path) == before
    assert git(path, "status", "--porcelain=v1", "--branch").splitlines()[0] == "## feature/mine"
    assert git(remote, "show", "main:app.py") == "print('v2')\n"
    assert git(remote, "show", "main:theirs.txt") == "theirs\n"
    assert git(remote, "show", "main:late.txt") == "late\n"


DRIVER = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    import anyio, pygit2
    from engine.gitops import GitRepo, MergeQueue, WorkspacePool
    from engine.gitops.publisher import Publisher
    from engine.store.db import Store

    path = Path(sys.argv[1])

    async def main():
        repo = GitRepo(path)
        green = repo.ensure_green("main")
        pool = WorkspacePool(repo, path.parent / "pool", 1)
        store = Store(path.parent / "mission.db")
        queue = MergeQueue(repo, store, mission_id=None, verify_command="true",
                           verify_timeout=10, batch_size=2, verify_dir=path.parent / "verify")
        ws = await pool.acquire("mc/unit/a", green)
        (ws.path / "a.txt").write_text("a")
        head = pool.commit_all(ws, "agent work")
        await pool.release(ws)
        queue.submit(None, "mc/unit/a", head)
        out = await queue.run_once()
        push = await Publisher(queue).push("origin", "main")
        merge = repo.pygit[pygit2.Oid(hex=repo.green_head())]
        print(json.dumps({
            "promoted": len(out.promoted), "push": push.ok, "push_output": push.output,
            "author": repo.pygit[pygit2.Oid(hex=head)].author.name,
            "committer": merge.committer.name,
        }))

    anyio.run(main)
""")


def test_works_without_any_configured_git_identity(tmp_path: Path) -> None:
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(remote))
    path = tmp_path / "target"
    init_repo(path)
    git(path, "remote", "add", "origin", str(remote))
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GIT_", "EMAIL")) and k not in ("HOME", "XDG_CONFIG_HOME")}
    env |= {"HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": str(home / "none"),
            "XDG_CONFIG_HOME": str(home / "xdg")}
    probe = subprocess.run(["git", "config", "user.name"], cwd=path, env=env, capture_output=True)
    assert probe.returncode == 1 and probe.stdout == b""  # really no identity anywhere
    proc = subprocess.run([sys.executable, "-c", DRIVER, str(path)], env=env, capture_output=True,
                          text=True, timeout=60, cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["promoted"] == 1 and result["push"], result
    assert result["author"] == "mc-agent" and result["committer"] == "Mission Control"
