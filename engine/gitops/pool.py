"""A pool of reusable git worktrees for agents.

Worktrees are pygit2 linked worktrees named ``mc-slot-<n>`` at ``<pool_dir>/slot-<n>``,
created on demand up to ``size`` and reused: acquiring one force-checks-out the
requested base commit, removes untracked files (ignored files such as caches are
kept), and points a freshly force-created branch at it. Releasing detaches HEAD, so
no pool slot holds a branch that somebody else may need to move or delete.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio
import pygit2
from pygit2.enums import FileMode

from engine.gitops.errors import GitError
from engine.gitops.identity import agent_signature
from engine.gitops.includes import copy_included, included_files, recorded
from engine.gitops.repo import GitRepo, open_repository
from engine.gitops.submodules import gitlinks, is_populated
from engine.gitops.worktrees import (
    clean_checkout,
    ensure_worktree,
    readable_index,
    repair_worktrees,
    slot_name,
)

SLOT_PREFIX = "mc-slot-"


@dataclass
class Workspace:
    path: Path
    branch: str
    base_commit: str
    slot: int


class WorkspacePool:
    """Up to ``size`` worktrees under ``pool_dir``; ``acquire`` waits when all are busy."""

    def __init__(self, repo: GitRepo, pool_dir: Path, size: int,
                 include: Sequence[str] = ()) -> None:
        if size < 1:
            raise ValueError("pool size must be at least 1")
        self.repo = repo
        self.include = list(include)  # worktree.include globs (see includes.py)
        self.pool_dir = Path(pool_dir).resolve()
        self.size = size
        self._main = open_repository(repo.path)  # our own handle: used from worker threads
        self._main_lock = threading.Lock()
        self._handles: dict[int, pygit2.Repository] = {}
        self._busy: set[int] = set()
        self._slot_freed: anyio.Event | None = None

    # ------------------------------------------------------------------ start-up
    def repair(self) -> list[str]:
        """Prune or repair pool worktrees left by a crashed run; returns what was done."""
        with self._main_lock:
            self._handles.clear()
            return repair_worktrees(self._main, self.pool_dir, SLOT_PREFIX, self._slot_of)

    def save_uncommitted(self, branches: set[str], message: str) -> list[str]:
        """Commit what a killed agent left uncommitted in a slot still on one of ``branches``.

        Call at start-up, before :meth:`repair` (which detaches the slots' HEADs) and before
        any acquire (which cleans them). Returns notes; slots on other branches are untouched.
        """
        notes: list[str] = []
        if not self.pool_dir.is_dir():
            return notes
        for path in sorted(self.pool_dir.glob("slot-*")):
            if not (path / ".git").is_file():
                continue
            try:
                wt = pygit2.Repository(str(path))
                if wt.head_is_detached or wt.head.name.removeprefix("refs/heads/") not in branches:
                    continue
                commit = _commit_leftovers(wt, message)
            except (pygit2.GitError, KeyError, OSError) as exc:
                notes.append(f"could not save the uncommitted work in {path.name}: {exc}")
                continue
            if commit:
                notes.append(f"saved the uncommitted work in {path.name} on "
                             f"{wt.head.shorthand} as {commit[:10]}")
        return notes

    def migrate_from(self, old_dir: Path, branches: set[str], message: str) -> list[str]:
        """Move off a pool of an earlier version (``<git dir>/mc/pool``); returns notes.

        Call at start-up, before :meth:`save_uncommitted` and :meth:`repair`. Uncommitted work
        in an old slot on one of ``branches`` or on any ``mc/unit/*`` branch is first saved as a
        commit on that branch; then the old worktrees' registrations are pruned and the old
        folder is removed. A slot whose work cannot be saved is left on disk, untouched. The
        new slots are created on demand under :attr:`pool_dir`.
        """
        old_dir = Path(old_dir).resolve()
        if old_dir == self.pool_dir or not old_dir.is_dir():
            return []
        notes: list[str] = []
        keep: set[Path] = set()
        for path in sorted(old_dir.iterdir()):
            if not (path / ".git").is_file():
                continue
            try:
                wt = pygit2.Repository(str(path))
                branch = "" if wt.head_is_detached else wt.head.name.removeprefix("refs/heads/")
                if branch and (branch in branches or branch.startswith("mc/unit/")):
                    commit = _commit_leftovers(wt, message)
                    if commit:
                        notes.append(f"saved the uncommitted work in {path} on {branch} "
                                     f"as {commit[:10]}")
            except (pygit2.GitError, KeyError, OSError) as exc:
                keep.add(path)
                notes.append(f"could not save the uncommitted work in {path} ({exc}); "
                             "left it where it is")
        with self._main_lock:
            admin = Path(self._main.path) / "worktrees"
            names = set(self._main.list_worktrees())
            names |= {d.name for d in admin.iterdir() if d.is_dir()} if admin.is_dir() else set()
            for name in sorted(names):
                gitdir_file = admin / name / "gitdir"
                try:
                    where = Path(gitdir_file.read_text().strip()).parent.resolve()
                except OSError:
                    continue
                if not where.is_relative_to(old_dir) or where in keep:
                    continue
                try:
                    self._main.lookup_worktree(name).prune(True)
                except (pygit2.GitError, KeyError):
                    pass
                shutil.rmtree(admin / name, ignore_errors=True)
        if keep:
            for path in sorted(old_dir.iterdir()):
                if path not in keep:
                    shutil.rmtree(path, ignore_errors=True)
        else:
            shutil.rmtree(old_dir, ignore_errors=True)
        notes.append(f"moved the worktree pool from {old_dir} to {self.pool_dir} "
                     "(agents cannot edit files under .git)")
        return notes

    def _slot_of(self, name: str) -> Path | None:
        """Where worktree ``name`` belongs, if it is one of this pool's slots."""
        suffix = name.removeprefix(SLOT_PREFIX)
        if name == suffix or not suffix.isdigit() or int(suffix) >= self.size:
            return None
        return self.slot_path(int(suffix))

    def slot_path(self, slot: int) -> Path:
        return self.pool_dir / f"slot-{slot}"

    # ------------------------------------------------------------------ acquire / release
    async def acquire(self, branch: str, base_commit: str) -> Workspace:
        """A clean worktree on a fresh ``branch`` at ``base_commit``; waits for a free slot."""
        while True:
            slot = self._pick_slot()
            if slot is not None:
                break
            if self._slot_freed is None:
                self._slot_freed = anyio.Event()
            await self._slot_freed.wait()
        self._busy.add(slot)
        try:
            path = await anyio.to_thread.run_sync(self._prepare, slot, branch, base_commit)
        except BaseException:
            self._free(slot)
            raise
        return Workspace(path=path, branch=branch, base_commit=base_commit, slot=slot)

    def _pick_slot(self) -> int | None:
        free = [s for s in range(self.size) if s not in self._busy]
        if not free:
            return None
        existing = [s for s in free if s in self._handles or self.slot_path(s).exists()]
        return (existing or free)[0]

    def _free(self, slot: int) -> None:
        self._busy.discard(slot)
        if self._slot_freed is not None:
            self._slot_freed.set()
            self._slot_freed = None

    async def release(self, ws: Workspace) -> None:
        """Hand the worktree back (HEAD detached; the branch and its commits stay)."""
        try:
            await anyio.to_thread.run_sync(self._detach, ws.slot)
        finally:
            self._free(ws.slot)

    # ------------------------------------------------------------------ blocking work
    def _handle(self, slot: int) -> pygit2.Repository:
        """The slot's worktree repository, creating the worktree when missing."""
        handle = self._handles.get(slot)
        if handle is not None and Path(handle.workdir).exists():
            return handle
        with self._main_lock:
            handle = ensure_worktree(
                self._main, slot_name(SLOT_PREFIX, slot), self.slot_path(slot)
            )
        self._handles[slot] = handle
        return handle

    def _prepare(self, slot: int, branch: str, base_commit: str) -> Path:
        wt = self._handle(slot)
        try:
            commit = wt[pygit2.Oid(hex=base_commit)].peel(pygit2.Commit)
        except (KeyError, ValueError):
            raise GitError(f"base commit {base_commit!r} not found") from None
        clean_checkout(wt, commit)
        copy_included(self.repo.path, Path(wt.workdir), Path(wt.path),
                      included_files(self.repo.path, self.include), commit.tree)
        name = branch.removeprefix("refs/heads/")
        with self._main_lock:
            existing = self._main.branches.local.get(name)
            if existing is not None and existing.is_checked_out():
                raise GitError(f"branch {name!r} is checked out in another worktree")
            self._main.branches.local.create(name, self._main[commit.id], force=True)
        wt.set_head(f"refs/heads/{name}")
        return Path(wt.workdir).resolve()

    def _detach(self, slot: int) -> None:
        wt = self._handles.get(slot)
        if wt is None:
            return
        try:
            wt.set_head(wt.head.target)
        except pygit2.GitError:
            pass

    # ------------------------------------------------------------------ helpers for agents
    def commit_all(self, ws: Workspace, message: str) -> str | None:
        """Stage everything an agent left uncommitted and commit it as mc-agent."""
        return _commit_leftovers(self._handle(ws.slot), message)

    def head(self, ws: Workspace) -> str:
        return str(self._handle(ws.slot).head.target)

    def close(self) -> None:
        self._handles.clear()



def _keep_missing_submodules(wt: pygit2.Repository, index: pygit2.Index, head: pygit2.Commit) -> None:
    """A submodule whose folder is missing or not checked out is not a deletion: its
    gitlink stays as HEAD has it (removing a submodule takes ``git rm``, by the agent)."""
    workdir = Path(wt.workdir)
    for sub in gitlinks(head.tree):
        if sub.path not in index and not is_populated(workdir / sub.path):
            index.add(pygit2.IndexEntry(sub.path, pygit2.Oid(hex=sub.commit), FileMode.COMMIT))


def _leave_out_included(wt: pygit2.Repository, index: pygit2.Index, head: pygit2.Commit) -> None:
    """Files copied in from the user's checkout (worktree includes) are never committed,
    even when an agent un-ignored them: their index entries stay as HEAD has them."""
    for rel in recorded(Path(wt.path)):
        try:
            entry = head.tree[rel]
        except KeyError:
            if rel in index:
                index.remove(rel)
            continue
        index.add(pygit2.IndexEntry(rel, entry.id, entry.filemode))


def _commit_leftovers(wt: pygit2.Repository, message: str) -> str | None:
    """Stage everything (ignored and included files excepted; a missing submodule is not
    deleted) and commit it as mc-agent; None if clean."""
    index = readable_index(wt)
    index.add_all()
    head = wt.head.peel(pygit2.Commit)
    _keep_missing_submodules(wt, index, head)
    _leave_out_included(wt, index, head)
    index.write()
    tree = index.write_tree()
    if tree == head.tree_id:
        return None
    sig = agent_signature()
    return str(wt.create_commit("HEAD", sig, sig, message, tree, [head.id]))
