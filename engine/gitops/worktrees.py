"""Low-level worktree helpers shared by the workspace pool and the verify worktree.

All functions are blocking (call them from a worker thread) and only touch linked
worktrees whose names carry one of our prefixes; the user's own worktrees and main
checkout are never looked at.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pygit2
from pygit2.enums import CheckoutStrategy

from engine.gitops.checkout import fast_clean_checkout, unlink_stray_links
from engine.gitops.cli import git_env
from engine.gitops.errors import GitError
from engine.gitops.repo import common_dir
from engine.gitops.submodules import sync_submodules

CLEAN_STRATEGY = CheckoutStrategy.FORCE | CheckoutStrategy.REMOVE_UNTRACKED
TMP_BRANCH_PREFIX = "mc/tmp/"


def slot_name(prefix: str, slot: int) -> str:
    return f"{prefix}{slot}"


def _seed_commit(main: pygit2.Repository) -> pygit2.Commit:
    """A commit to create a worktree at: mc/green if present, else HEAD."""
    for name in ("refs/heads/mc/green", "HEAD"):
        try:
            return main.revparse_single(name).peel(pygit2.Commit)
        except (KeyError, pygit2.GitError):
            continue
    raise GitError("the repository has no commits yet")


def add_worktree(main: pygit2.Repository, name: str, path: Path) -> None:
    """Create linked worktree ``name`` at ``path`` with a detached HEAD.

    pygit2 insists on a branch, so a temporary ``mc/tmp/<name>`` branch is used and
    deleted once HEAD is detached. Stale registrations and stray directories at the
    same place are cleared first.
    """
    if name in main.list_worktrees():
        try:
            main.lookup_worktree(name).prune(True)
        except (pygit2.GitError, KeyError):
            pass  # half-created: removed just below
    _remove_gitdir(main, name)  # also a half-written one, which libgit2 does not list
    if path.exists():
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_name = f"{TMP_BRANCH_PREFIX}{name}"
    branch = main.branches.local.create(tmp_name, _seed_commit(main), force=True)
    try:
        main.add_worktree(name, str(path), branch)
        wt = pygit2.Repository(str(path))
        wt.set_head(wt.head.target)
    finally:
        if tmp_name in main.branches.local:
            main.branches.local.delete(tmp_name)


def readable_index(wt: pygit2.Repository) -> pygit2.Index:
    """The worktree's own index, (re)read from disk so libgit2 can use it.

    Agents and verification commands run git in mc's worktrees, and git writes the index
    the way the user's config says: ``core.splitIndex`` (extension ``link``) is a form
    libgit2 cannot read. Then the git CLI rewrites it as one plain file first.
    Raises :class:`GitError` when it still cannot be read.
    """
    index = wt.index
    try:
        index.read(True)
        return index
    except pygit2.GitError as exc:
        if "extension" not in str(exc):
            raise
        first = exc
    subprocess.run(
        ["git", "-c", "core.splitIndex=false", "update-index", "--no-split-index"],
        cwd=wt.workdir, env=git_env(), capture_output=True, stdin=subprocess.DEVNULL,
    )
    try:
        index.read(True)
    except pygit2.GitError:
        raise GitError(f"cannot read the index of {wt.workdir}: {first}") from None
    return index


def clean_checkout(wt: pygit2.Repository, commit: pygit2.Commit) -> None:
    """Make the worktree exactly ``commit`` with a detached HEAD: tracked files forced,
    untracked files removed (ignored files kept), any merge/rebase state cleared.

    Only what differs is rewritten (``checkout.fast_clean_checkout``); anything unusual
    (content filters, a conflicted index, ...) takes libgit2's forced checkout. Submodules
    are then checked out from the user's own clones (``submodules.sync_submodules``)."""
    readable_index(wt)
    if not fast_clean_checkout(wt, commit):
        unlink_stray_links(wt)
        wt.checkout_tree(commit, strategy=CLEAN_STRATEGY)
    wt.set_head(commit.id)
    wt.state_cleanup()
    common = common_dir(wt)
    user_checkout = common.parent if common.name == ".git" else None
    sync_submodules(Path(wt.workdir), commit.tree, common / "modules", user_checkout)


def _remove_gitdir(main: pygit2.Repository, name: str) -> None:
    """Drop ``.git/worktrees/<name>`` if prune left it behind."""
    gitdir = Path(main.path) / "worktrees" / name
    if gitdir.exists():
        shutil.rmtree(gitdir, ignore_errors=True)


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def repair_worktrees(
    main: pygit2.Repository,
    folder: Path,
    prefix: str,
    expected_path: Callable[[str], Path | None],
) -> list[str]:
    """Prune, repair or keep worktrees named ``prefix*``; remove strays under ``folder``.

    ``expected_path(name)`` says where a worktree of that name belongs, or ``None``
    when it is no longer wanted (e.g. the pool shrank).
    """
    notes: list[str] = []
    registered: set[Path] = set()
    admin = Path(main.path) / "worktrees"
    on_disk = {d.name for d in admin.iterdir() if d.is_dir()} if admin.is_dir() else set()
    for name in sorted(on_disk | set(main.list_worktrees())):
        if not name.startswith(prefix):
            continue
        try:
            wt = main.lookup_worktree(name)
        except (pygit2.GitError, KeyError):
            # a crash inside `git worktree add` leaves a registration without HEAD, which
            # libgit2 cannot open (and may or may not list); the slot is recreated on demand
            _remove_gitdir(main, name)
            notes.append(f"removed half-created worktree {name}")
            continue
        path = Path(wt.path)
        want = expected_path(name)
        if want is None or path.resolve() != want.resolve():
            wt.prune(True)
            _remove_gitdir(main, name)
            if _inside(path, folder):
                shutil.rmtree(path, ignore_errors=True)
            notes.append(f"pruned worktree {name} at {path} (no longer part of the pool)")
            continue
        if not path.exists():
            wt.prune(True)
            _remove_gitdir(main, name)
            notes.append(f"pruned stale worktree {name}: {path} is gone")
            continue
        lock = Path(main.path) / "worktrees" / name / "index.lock"
        if lock.exists():
            lock.unlink()
            notes.append(f"removed stale index.lock of {name}")
        try:
            handle = pygit2.Repository(str(path))
            handle.set_head(handle.head.target)
            handle.state_cleanup()
        except (pygit2.GitError, KeyError) as exc:
            wt.prune(True)
            _remove_gitdir(main, name)
            shutil.rmtree(path, ignore_errors=True)
            notes.append(f"removed broken worktree {name} ({exc}); it is recreated on demand")
            continue
        registered.add(path.resolve())
        notes.append(f"kept worktree {name} for reuse")
    if folder.exists():
        for child in sorted(folder.iterdir()):
            if child.is_dir() and child.resolve() not in registered and _looks_ours(child, prefix):
                shutil.rmtree(child, ignore_errors=True)
                notes.append(f"removed stray directory {child}")
    for branch in list(main.branches.local):
        if branch.startswith(TMP_BRANCH_PREFIX + prefix):
            main.branches.local.delete(branch)
            notes.append(f"deleted leftover branch {branch}")
    return notes


def _looks_ours(child: Path, prefix: str) -> bool:
    """Pool slot directories are named ``slot-N``; anything else in the folder is left alone."""
    return child.name.startswith("slot-")


def ensure_worktree(main: pygit2.Repository, name: str, path: Path) -> pygit2.Repository:
    """Open worktree ``name`` at ``path``, (re)creating it when missing or broken."""
    path = path.resolve()
    try:
        wt = main.lookup_worktree(name) if name in main.list_worktrees() else None
    except (pygit2.GitError, KeyError):
        wt = None  # half-created: add_worktree clears it
    if wt is not None and Path(wt.path).resolve() == path and (path / ".git").is_file():
        lock = Path(main.path) / "worktrees" / name / "index.lock"
        if lock.exists():
            lock.unlink()
        try:
            handle = pygit2.Repository(str(path))
            handle.head  # noqa: B018 - one whose HEAD cannot be read is recreated
            return handle
        except (pygit2.GitError, KeyError):
            pass
    add_worktree(main, name, path)
    return pygit2.Repository(str(path))
