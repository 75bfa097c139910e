"""Git-ignored files the tests need (``.env``, local settings), copied from the user's
checkout into mc's worktrees: ``[worktree] include`` globs and a ``.worktreeinclude`` file.

Which files: those in the user's checkout that match an include pattern *and* that git
ignores there (tracked and plain untracked files are never copied: they reach the
worktrees through commits, or not at all). Patterns are matched by git itself:

- ``worktree.include`` globs are relative to the repository root (``.env``,
  ``config/*.local.json``, ``**/.env``); they become anchored patterns (``/.env``);
- ``.worktreeinclude`` at the root of the user's checkout holds gitignore-style patterns,
  one a line (``#`` comments, ``!`` negation; a pattern without a slash matches at any
  depth), the convention other agent tools use.

``git ls-files --others --ignored --exclude-from=<patterns>`` lists the untracked files
matching them, ``git check-ignore --stdin`` keeps those git ignores. Both only read the
user's checkout and index (the git CLI reads any index format).

Copies are refreshed on every checkout of a worktree (a file whose size or mtime differ
is copied again; one no longer included is removed), and the list is recorded in the
worktree's git dir (``mc-included``), so commits mc makes there leave them out
(``unstage_included``) even if an agent un-ignored them, and a unit whose branch adds
one is rejected before review.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pygit2

from engine.gitops.cli import git_env
from engine.gitops.errors import GitError

INCLUDE_FILE = ".worktreeinclude"
RECORD = "mc-included"
TIMEOUT_S = 120.0


def include_patterns(checkout: Path, globs: Sequence[str]) -> list[str]:
    """The gitignore-style patterns to include: anchored config globs, then the lines of
    ``.worktreeinclude`` in ``checkout`` (if present)."""
    patterns = ["/" + g.lstrip("/") for g in globs if g.strip()]
    path = checkout / INCLUDE_FILE
    if path.is_file():
        patterns += [line.rstrip("\n") for line in path.read_text(errors="replace").splitlines()]
    return patterns


def included_files(checkout: Path, globs: Sequence[str]) -> list[str]:
    """Paths (relative, ``/``-separated, sorted) of the git-ignored files in ``checkout``
    that the include patterns select. Raises :class:`GitError` when git cannot list them."""
    patterns = include_patterns(checkout, globs)
    if not any(p.strip() and not p.lstrip().startswith("#") for p in patterns):
        return []
    with tempfile.NamedTemporaryFile("w", prefix="mc-include-", suffix=".txt") as listing:
        listing.write("\n".join(patterns) + "\n")
        listing.flush()
        matched = _git(["ls-files", "-z", "--others", "--ignored", f"--exclude-from={listing.name}"],
                       checkout)
    candidates = [p for p in matched.split("\0") if p]
    if not candidates:
        return []
    ignored = _git(["check-ignore", "-z", "--stdin"], checkout, stdin="\0".join(candidates) + "\0",
                   ok_codes=(0, 1))
    keep = {p for p in ignored.split("\0") if p}
    return sorted(p for p in candidates if p in keep and (checkout / p).is_file())


def copy_included(checkout: Path, workdir: Path, gitdir: Path, files: Sequence[str],
                  tree: pygit2.Tree) -> list[str]:
    """Copy ``files`` from ``checkout`` into ``workdir`` (only when size or mtime differ),
    remove copies recorded earlier that are no longer included, and record the list in
    ``gitdir``; returns it. A path ``tree`` (the worktree's commit) tracks is never
    overwritten, and nothing is written through a symlink in the worktree."""
    files = [rel for rel in files if not _in_tree(tree, rel)]
    before = recorded(gitdir)
    for rel in sorted(set(before) - set(files)):
        target = workdir / rel
        if _real_parents(workdir, rel) and (target.is_symlink() or target.is_file()):
            target.unlink()
    for rel in files:
        source, target = checkout / rel, workdir / rel
        if not _real_parents(workdir, rel, create=True):
            continue  # a symlink or a file where a folder goes: never write through it
        try:
            src = source.stat()
        except OSError:
            continue  # gone since it was listed
        try:
            dst = target.lstat()
            if stat.S_ISLNK(dst.st_mode) or stat.S_ISDIR(dst.st_mode):
                if stat.S_ISDIR(dst.st_mode):
                    continue
                target.unlink()
            elif dst.st_size == src.st_size and dst.st_mtime_ns == src.st_mtime_ns:
                continue
        except FileNotFoundError:
            pass
        shutil.copy2(source, target)
    (gitdir / RECORD).write_text("".join(f"{rel}\n" for rel in files))
    return files


def _in_tree(tree: pygit2.Tree, rel: str) -> bool:
    try:
        tree[rel]
    except KeyError:
        return False
    return True


def recorded(gitdir: Path) -> list[str]:
    """The included files last copied into the worktree whose git dir is ``gitdir``."""
    try:
        return [line for line in (gitdir / RECORD).read_text().splitlines() if line]
    except OSError:
        return []


def _real_parents(root: Path, rel: str, create: bool = False) -> bool:
    """True when every folder leading to ``rel`` under ``root`` is a real folder (made
    when ``create``); False at the first symlink, file or (without ``create``) gap."""
    folder = root
    for part in rel.split("/")[:-1]:
        folder = folder / part
        try:
            mode = folder.lstat().st_mode
        except FileNotFoundError:
            if not create:
                return False
            os.mkdir(folder)
            continue
        if not stat.S_ISDIR(mode):
            return False
    return True


def _git(args: list[str], cwd: Path, stdin: str | None = None,
         ok_codes: tuple[int, ...] = (0,)) -> str:
    try:
        proc = subprocess.run(["git", *args], cwd=cwd, env=git_env(), input=stdin,
                              capture_output=True, text=True, timeout=TIMEOUT_S,
                              stdin=None if stdin is not None else subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GitError(f"worktree includes: git {args[0]} failed in {cwd}: {exc}") from None
    if proc.returncode not in ok_codes:
        raise GitError(f"worktree includes: git {args[0]} failed in {cwd}: {proc.stderr.strip()}")
    return proc.stdout
