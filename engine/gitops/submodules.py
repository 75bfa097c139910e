"""Submodules in mc's worktrees, checked out from the user's own clones: no network.

libgit2 checks a gitlink (mode ``160000``) out as nothing at all, so a worktree came up
without ``lib/`` and ``git add -A`` there recorded the submodule as deleted. After every
clean checkout of a pool slot or the verify worktree, :func:`sync_submodules` runs

    git -c protocol.file.allow=always -c submodule.<name>.url=<source> \
        -c submodule.<name>.active=true submodule update --init --force --checkout -- <paths>

in the worktree, where ``<source>`` is the user's clone of that submodule: the absorbed
git dir ``<common git dir>/modules/<name>`` (what ``git submodule update --init`` makes),
else an old-style ``<user checkout>/<path>/.git``. The ``-c`` settings only live for that
command: the user's config (shared by all worktrees) is never written. git clones the
source with hard links into the worktree's own git dir (``.git/worktrees/mc-slot-N/
modules/<name>``, removed with the worktree) and afterwards only checks out. Untracked
files inside a submodule are then removed (``git clean -ffd``; ignored ones kept, as in
the worktree itself). Nested submodules are synced the same way from
``<source>/modules/<inner name>``.

A submodule the user never initialised (no local clone) stays an empty folder, exactly
as git leaves it, so ``git status`` is clean and ``git add -A`` does not delete it.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pygit2
from pygit2.enums import FileMode

from engine.gitops.cli import git_env
from engine.gitops.errors import GitError

GITMODULES = ".gitmodules"
TIMEOUT_S = 300.0


@dataclass
class Submodule:
    name: str
    path: str
    commit: str  # what the gitlink records


def declarations(tree: pygit2.Tree) -> list[tuple[str, str]]:
    """``(name, path)`` of every submodule the ``.gitmodules`` of ``tree`` declares."""
    try:
        blob = tree[GITMODULES]
    except KeyError:
        return []
    if not isinstance(blob, pygit2.Blob):
        return []
    with tempfile.NamedTemporaryFile(prefix="mc-gitmodules-") as copy:
        copy.write(blob.data)
        copy.flush()
        try:
            entries = [(e.name, e.value) for e in pygit2.Config(copy.name)]
        except pygit2.GitError:
            return []  # an unreadable .gitmodules: git itself cannot use it either
    return [
        (key[len("submodule."):-len(".path")], value.strip("/"))
        for key, value in entries
        if key.startswith("submodule.") and key.endswith(".path") and value
    ]


def gitlinks(tree: pygit2.Tree) -> list[Submodule]:
    """The submodules of ``tree``: paths its ``.gitmodules`` declares that are gitlinks in
    ``tree`` (a stale declaration is left out)."""
    found: list[Submodule] = []
    for name, path in declarations(tree):
        try:
            entry = tree[path]
        except KeyError:
            continue
        if entry.filemode == FileMode.COMMIT:
            found.append(Submodule(name, path, str(entry.id)))
    return found


def is_populated(path: Path) -> bool:
    """True when ``path`` holds a checked-out submodule (a ``.git`` file or folder)."""
    return os.path.lexists(path / ".git")


def sync_submodules(workdir: Path, tree: pygit2.Tree, sources: Path, user_checkout: Path | None) -> None:
    """Check out every submodule of ``tree`` in ``workdir`` at its recorded commit.

    ``sources`` is the folder holding the user's submodule git dirs (``.git/modules``);
    ``user_checkout`` the user's working tree (for old-style embedded ``.git`` folders).
    Raises :class:`GitError` when a recorded commit cannot be checked out from them.
    """
    subs = gitlinks(tree)
    if not subs:
        return
    found: list[tuple[Submodule, Path]] = []
    for sub in subs:
        source = source_of(sub, sources, user_checkout)
        if source is None:
            _empty_folder(workdir / sub.path)
        else:
            found.append((sub, source))
    if not found:
        return
    args = ["git", "-c", "protocol.file.allow=always"]
    for sub, source in found:
        args += ["-c", f"submodule.{sub.name}.url={source}", "-c", f"submodule.{sub.name}.active=true"]
    args += ["submodule", "update", "--init", "--force", "--checkout", "--", *(s.path for s, _ in found)]
    _run(args, workdir, "could not check out submodule(s) " + ", ".join(s.path for s, _ in found))
    for sub, source in found:
        path = workdir / sub.path
        _run(["git", "clean", "-ffdq"], path, f"could not clean submodule {sub.path}")
        try:
            inner = pygit2.Repository(str(path)).head.peel(pygit2.Tree)
        except (pygit2.GitError, KeyError):
            continue
        sync_submodules(path, inner, source / "modules", None)


def source_of(sub: Submodule, sources: Path, user_checkout: Path | None) -> Path | None:
    """The user's local clone of ``sub``, or None when it was never initialised."""
    candidates = [sources / sub.name]
    if user_checkout is not None:
        candidates.append(user_checkout / sub.path / ".git")
    for candidate in candidates:
        if (candidate / "HEAD").is_file() and (candidate / "objects").is_dir():
            return candidate
    return None


def unknown_commits(before: pygit2.Tree, after: pygit2.Tree, sources: Path,
                    user_checkout: Path | None) -> list[Submodule]:
    """Submodules whose gitlink ``after`` moves to a commit the user's clone does not have
    (made inside an agent's worktree, say): no other worktree could check it out."""
    old = {sub.path: sub.commit for sub in gitlinks(before)}
    found = []
    for sub in gitlinks(after):
        if old.get(sub.path) == sub.commit:
            continue
        source = source_of(sub, sources, user_checkout)
        try:
            present = source is not None and pygit2.Oid(hex=sub.commit) in pygit2.Repository(str(source))
        except pygit2.GitError:
            present = False
        if not present:
            found.append(sub)
    return found


def _empty_folder(path: Path) -> None:
    """Where an uninitialised submodule goes: an empty folder, as git leaves it."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    os.makedirs(path, exist_ok=True)


def _run(args: list[str], cwd: Path, what: str) -> None:
    try:
        proc = subprocess.run(args, cwd=cwd, env=git_env(), stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GitError(f"{what}: {exc}") from None
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()[-1500:]
        raise GitError(f"{what} (from your checkout's own clones, no network): {detail}")
