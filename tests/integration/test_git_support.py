"""Helpers for the git-layer tests: real repositories built with pygit2 and the git CLI.

(Named ``test_git_*`` so it sits with the tests it serves; it holds no tests itself.)
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pygit2

from engine.store.db import Store

SIG = pygit2.Signature("Test Author", "test@example.com", 1_700_000_000, 0)


def git(cwd: Path, *args: str, check: bool = True) -> str:
    """Run the git CLI with a fixed identity; returns stdout."""
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {proc.stderr}")
    return proc.stdout


def init_repo(path: Path, files: dict[str, str] | None = None, branch: str = "main") -> str:
    """A non-bare repo with one commit on ``branch`` checked out; returns its sha."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", branch)
    for name, text in (files or {"README.md": "hello\n"}).items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "initial")
    return git(path, "rev-parse", "HEAD").strip()


def commit_on(
    repo_path: Path,
    branch: str,
    files: dict[str, str | None],
    message: str,
    parent: str | None = None,
) -> str:
    """Commit ``files`` (None = delete) on ``branch`` without touching any working tree.

    The parent is ``parent`` if given, else the branch's current tip.
    """
    repo = pygit2.Repository(str(repo_path))
    ref = f"refs/heads/{branch}"
    if parent is None:
        parent = str(repo.references[ref].target)
    base = repo[pygit2.Oid(hex=parent)].peel(pygit2.Commit)
    index = pygit2.Index()
    index.read_tree(base.tree)
    for name, text in files.items():
        if text is None:
            index.remove(name)
        else:
            blob = repo.create_blob(text.encode())
            index.add(pygit2.IndexEntry(name, blob, pygit2.enums.FileMode.BLOB))
    tree = index.write_tree(repo)
    oid = repo.create_commit(None, SIG, SIG, message, tree, [base.id])
    repo.references.create(ref, oid, force=True)
    return str(oid)


def open_store(path: Path) -> tuple[Store, int]:
    """A fresh store with one running mission; returns (store, mission_id)."""
    store = Store(path)
    mission_id = int(store.insert(
        "missions", {"objective": "test", "status": "running", "started_at": time.time()}
    ))
    return store, mission_id


def add_unit(store: Store, mission_id: int, unit_id: str, status: str = "queued") -> None:
    now = time.time()
    store.insert("units", {"id": unit_id, "mission_id": mission_id, "title": unit_id,
                           "status": status, "created_at": now, "updated_at": now})


def green_history_merges(repo_path: Path) -> list[str]:
    """Second parents of the merge commits in mc/green's history (one per merged branch)."""
    out = git(repo_path, "log", "--merges", "--format=%P", "refs/heads/mc/green")
    return [line.split()[1] for line in out.splitlines() if line.strip()]


def tree_files(repo_path: Path, rev: str) -> set[str]:
    return set(git(repo_path, "ls-tree", "-r", "--name-only", rev).split())
