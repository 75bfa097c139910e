"""Moving one of mc's worktrees to another commit by rewriting only what differs.

``fast_clean_checkout`` gives the same end state as a forced libgit2 checkout with
``REMOVE_UNTRACKED`` (tracked files exactly as in the commit, untracked files gone,
ignored files kept, the index matching the commit), but touches only the paths that
differ: the tree diff from the worktree's HEAD to the target plus whatever ``status``
reports (edits, deletions, staged changes, untracked files).

Why not just libgit2: it rewrites a changed file by opening it with ``O_TRUNC``. On
ext4 a truncate-to-zero makes ``close`` write the file out at once (``auto_da_alloc``),
and the freed blocks are trimmed synchronously when the file system is mounted with
``discard``: measured on the dev box, 250 small files cost 35-40 ms rewritten with
``O_TRUNC`` and about 3 ms overwritten in place (``benchmarks/bench_workspace.py``).
Here existing files are overwritten in place and cut to length with ``ftruncate``.

Anything unusual makes it return ``False`` before changing a byte (the caller then
runs the plain libgit2 checkout): no HEAD, a conflicted index, submodules, content
filters (``.gitattributes``, ``core.autocrlf``, ...), suspicious paths, a symlink or
a file where a directory should be. An ``OSError`` half-way also returns ``False``;
the forced checkout that follows repairs whatever state was left.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from pathlib import Path

import pygit2
from pygit2.enums import FileMode, FilterMode
from pygit2.index import IndexEntry

_BLOB_MODES = {FileMode.BLOB, FileMode.BLOB_EXECUTABLE, FileMode.LINK}
_ATTRIBUTES = ".gitattributes"
_FILTER_CONFIG = ("core.autocrlf", "core.eol", "core.attributesfile")


class _StatEntry(IndexEntry):
    """An index entry that carries the file's stat data, like ``git add`` records it.

    ``Index.add(path)`` would re-read, filter and hash a file we just wrote from a known
    blob (0.4 ms a file); pygit2's plain ``IndexEntry`` leaves the stat data zeroed, so
    every later status would hash the file again.
    """

    def __init__(self, path: str, object_id: pygit2.Oid, mode: int, st: os.stat_result) -> None:
        super().__init__(path, object_id, FileMode(mode))
        self.st = st

    def _to_c(self):  # type: ignore[no-untyped-def]
        centry, ref = super()._to_c()
        st = self.st
        centry.ctime.seconds, centry.ctime.nanoseconds = divmod(st.st_ctime_ns, 10**9)
        centry.mtime.seconds, centry.mtime.nanoseconds = divmod(st.st_mtime_ns, 10**9)
        centry.dev = st.st_dev & 0xFFFFFFFF
        centry.ino = st.st_ino & 0xFFFFFFFF
        centry.uid = st.st_uid & 0xFFFFFFFF
        centry.gid = st.st_gid & 0xFFFFFFFF
        centry.file_size = st.st_size & 0xFFFFFFFF
        return centry, ref


class _Fallback(Exception):
    """The fast path does not apply; use the full libgit2 checkout."""


def fast_clean_checkout(wt: pygit2.Repository, commit: pygit2.Commit) -> bool:
    """Make ``wt`` exactly ``commit`` (tracked files, index; untracked files removed,
    ignored files kept) by rewriting only what differs. HEAD is left to the caller
    (``worktrees.clean_checkout`` moves it right after).

    Returns ``False`` when the fast path does not apply (nothing was changed then, or a
    forced checkout is needed to finish); the caller falls back to libgit2.
    """
    try:
        plan = _plan(wt, commit)
    except (_Fallback, OSError, pygit2.GitError, KeyError, ValueError):
        return False
    try:
        if plan is None:  # tracked files and the index are already right
            _remove_empty_dirs(wt, wt.workdir.rstrip("/"), commit.tree)
        else:
            _apply(wt, commit.tree, plan)
    except (_Fallback, OSError, pygit2.GitError, KeyError, ValueError):
        wt.index.read(True)  # drop our in-memory edits; the forced checkout finishes
        return False
    return True


def unlink_stray_links(wt: pygit2.Repository) -> None:
    """Before libgit2's forced checkout: remove symlinks standing where a tracked file or
    folder goes, or untracked ones. libgit2 would write a tracked file *through* such a
    link (outside the worktree, wherever an agent pointed it) and leave the link."""
    try:
        status = wt.status(untracked_files="normal")
    except pygit2.GitError:
        return
    root = wt.workdir.rstrip("/")
    for path in status:
        full = f"{root}/{path.rstrip('/')}"
        parent_ok = _parent_ok(root, path.rstrip("/"), set(), create=False)
        if parent_ok and os.path.islink(full):
            os.unlink(full)


# ---------------------------------------------------------------------- planning
class _Plan:
    """What to change: ``files`` maps a path to its target blob (or None: must not
    exist); ``folders`` are untracked folders to remove whole, ignored files included
    (what libgit2's ``REMOVE_UNTRACKED`` does with a folder git does not track)."""

    def __init__(self) -> None:
        self.files: dict[str, pygit2.Object | None] = {}
        self.folders: list[str] = []


def _plan(wt: pygit2.Repository, commit: pygit2.Commit) -> _Plan | None:
    """What differs from ``commit``; None when nothing does."""
    if wt.head_is_unborn or wt.workdir is None:
        raise _Fallback
    index = wt.index
    index.read(False)
    if index.conflicts is not None:
        raise _Fallback
    head = wt.head.peel(pygit2.Commit)
    paths: set[str] = set(wt.status(untracked_files="normal"))
    if head.tree_id != commit.tree_id:
        for delta in wt.diff(head.tree, commit.tree).deltas:
            paths.add(delta.old_file.path)
            paths.add(delta.new_file.path)
    if not paths:
        return None
    tree = commit.tree
    plan = _Plan()
    root = wt.workdir.rstrip("/")
    for path in paths:
        if path.endswith("/"):  # an untracked folder (status lists it, not its files)
            path = path.rstrip("/")
            _check_path(path)
            if os.path.lexists(f"{root}/{path}/.git"):
                raise _Fallback  # a nested repository
            plan.folders.append(path)
            continue
        _check_path(path)
        entry = _entry(tree, path)
        if isinstance(entry, pygit2.Tree) and not _is_real_dir(f"{root}/{path}"):
            # a file or a symlink where the target has a folder (an agent may have put a
            # link to somewhere else there): remove it, never follow it; the folder's
            # files are in the status as deleted, so they are written back.
            entry = None
        elif entry is not None and entry.filemode not in _BLOB_MODES:
            raise _Fallback  # a submodule, or a real folder where the target has a file
        plan.files[path] = entry
    _refuse_filters(wt, tree, plan.files)
    return plan


def _is_real_dir(full: str) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(full).st_mode)
    except FileNotFoundError:
        return False


def _check_path(path: str) -> None:
    parts = path.split("/")
    if path.startswith("/") or any(p in ("", ".", "..") or p.lower() == ".git" for p in parts):
        raise _Fallback
    if parts[-1] == _ATTRIBUTES:
        raise _Fallback  # attributes change: libgit2 applies them in the right order


def _entry(tree: pygit2.Tree, path: str) -> pygit2.Object | None:
    try:
        return tree[path]
    except KeyError:
        return None


def _refuse_filters(wt: pygit2.Repository, tree: pygit2.Tree, plan: dict) -> None:
    """Fall back when a content filter (eol conversion, ident, a filter driver) could
    apply to a file we write: attribute files anywhere on its path, or filter config."""
    config = wt.config
    suspect = any(key in config for key in _FILTER_CONFIG)
    suspect = suspect or any(entry.name.startswith("filter.") for entry in config)
    common = Path(wt.path)
    commondir = common / "commondir"
    if commondir.is_file():
        common = (common / commondir.read_text().strip()).resolve()
    xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    for attributes in (common / "info" / "attributes", Path(xdg) / "git" / "attributes",
                       Path("/etc/gitattributes")):
        suspect = suspect or attributes.exists()
    checked: dict[str, bool] = {}
    written = [p for p, entry in plan.items() if entry is not None]
    for path in written:
        folder = path.rpartition("/")[0]
        while not suspect:
            if folder not in checked:
                name = f"{folder}/{_ATTRIBUTES}" if folder else _ATTRIBUTES
                checked[folder] = _entry(tree, name) is not None
            suspect = checked[folder]
            if not folder:
                break
            folder = folder.rpartition("/")[0]
        if suspect:
            break
    if suspect:
        for path in written:
            if wt.load_filter_list(path, FilterMode.TO_WORKTREE) is not None:
                raise _Fallback


# ---------------------------------------------------------------------- applying
_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def _apply(wt: pygit2.Repository, tree: pygit2.Tree, plan: _Plan) -> None:
    root = wt.workdir.rstrip("/")
    index = wt.index
    dirs_ok: set[str] = {""}
    touched_dirs: set[str] = set()
    for folder in sorted(plan.folders):
        if _parent_ok(root, folder, dirs_ok, create=False):
            full = f"{root}/{folder}"
            if not stat.S_ISDIR(os.lstat(full).st_mode):
                raise _Fallback
            shutil.rmtree(full)
            touched_dirs.add(folder.rpartition("/")[0])
    for path in sorted(p for p, entry in plan.files.items() if entry is None):
        _remove(root, path, dirs_ok)
        touched_dirs.add(path.rpartition("/")[0])
        if path in index:
            index.remove(path)
    _prune_empty(root, touched_dirs, dirs_ok)
    for path in sorted(p for p, entry in plan.files.items() if entry is not None):
        entry = plan.files[path]
        assert entry is not None
        st = _write(root, path, entry, dirs_ok)
        index.add(_StatEntry(path, entry.id, entry.filemode, st))
    index.write()
    _remove_empty_dirs(wt, root, tree)


def _parent_ok(root: str, path: str, dirs_ok: set[str], create: bool) -> bool:
    """True when every leading component of ``path`` is a real directory. Nothing is
    ever written or removed through a symlink: without ``create`` a missing component,
    a file or a symlink on the way means there is nothing to remove (False); with
    ``create`` missing folders are made and anything else in the way is a fallback."""
    folder = path.rpartition("/")[0]
    if folder in dirs_ok:
        return True
    parts = folder.split("/")
    for i in range(len(parts)):
        folder = "/".join(parts[: i + 1])
        if folder in dirs_ok:
            continue
        try:
            mode = os.lstat(f"{root}/{folder}").st_mode
        except FileNotFoundError:
            if not create:
                return False
            os.mkdir(f"{root}/{folder}")
            mode = stat.S_IFDIR
        if not stat.S_ISDIR(mode):
            if not create:
                return False
            raise _Fallback
        dirs_ok.add(folder)
    return True


def _remove(root: str, path: str, dirs_ok: set[str]) -> None:
    if not _parent_ok(root, path, dirs_ok, create=False):
        return  # its folder is gone already
    full = f"{root}/{path}"
    try:
        mode = os.lstat(full).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISDIR(mode):
        raise _Fallback  # status lists files, so a folder here is a type change
    os.unlink(full)


def _prune_empty(root: str, folders: set[str], dirs_ok: set[str]) -> None:
    """Remove folders (and their parents) that removing files left empty."""
    for folder in sorted(folders, key=lambda f: f.count("/"), reverse=True):
        while folder:
            try:
                os.rmdir(f"{root}/{folder}")
            except OSError:  # not empty (ignored files, other files), or gone
                break
            dirs_ok.discard(folder)
            folder = folder.rpartition("/")[0]


def _remove_empty_dirs(wt: pygit2.Repository, root: str, tree: pygit2.Tree) -> None:
    """Remove empty untracked folders (git does not see them, a forced checkout removes
    them). Only folders with subfolders are listed (``st_nlink`` says which, on file
    systems that count them), so the cost is a few calls, not a walk of every file;
    ignored folders are neither entered nor removed."""

    def visit(rel: str, full: str) -> bool:
        """Prune below ``full``; True when it is left empty."""
        empty = True
        with os.scandir(full) as entries:
            for item in entries:
                if not item.is_dir(follow_symlinks=False):
                    empty = False
                    continue
                sub = f"{rel}/{item.name}" if rel else item.name
                if sub == ".git":
                    empty = False
                    continue
                entry = _entry(tree, sub)
                if entry is not None and entry.filemode == FileMode.COMMIT:
                    empty = False  # a submodule: synced after the checkout
                    continue
                tracked = isinstance(entry, pygit2.Tree)
                if tracked:
                    empty = False
                    if item.stat(follow_symlinks=False).st_nlink != 2:  # it has subfolders
                        visit(sub, item.path)
                elif os.path.lexists(f"{item.path}/.git"):
                    raise _Fallback  # a nested repository: the forced checkout removes it
                elif wt.path_is_ignored(sub + "/") or not visit(sub, item.path):
                    empty = False
                elif not wt.path_is_ignored(sub):
                    os.rmdir(item.path)
                else:
                    empty = False
        return empty

    visit("", root)


def _write(root: str, path: str, entry: pygit2.Object, dirs_ok: set[str]) -> os.stat_result:
    """Put the blob at ``path`` (a regular file is overwritten in place); returns its stat."""
    _parent_ok(root, path, dirs_ok, create=True)
    full = f"{root}/{path}"
    data = entry.data
    if entry.filemode == FileMode.LINK:
        try:
            os.unlink(full)
        except FileNotFoundError:
            pass
        os.symlink(os.fsdecode(data), full)
        return os.lstat(full)
    try:
        fd = os.open(full, _OPEN_FLAGS, 0o666)
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise  # e.g. a folder where the file goes: the forced checkout sorts it out
        os.unlink(full)  # a symlink where a file goes: replace the link, never follow it
        fd = os.open(full, _OPEN_FLAGS, 0o666)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _Fallback
        if info.st_size > len(data):
            os.ftruncate(fd, len(data))  # shrink, never to zero first (see module doc)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        want_exec = entry.filemode == FileMode.BLOB_EXECUTABLE
        if bool(info.st_mode & 0o100) != want_exec:
            perms = stat.S_IMODE(info.st_mode)
            perms = perms | ((perms & 0o444) >> 2) if want_exec else perms & ~0o111
            os.fchmod(fd, perms)
        return os.fstat(fd)
    finally:
        os.close(fd)
