"""Start-up checks of the target repository, before any agent runs.

What mc cannot work with is refused here with the reason and the fix (a
:class:`GitError`, exit 2), instead of failing every unit later; what merely
looks wrong comes back as notes (logged as warnings).

Refused: no git CLI on PATH; a submodule of ``mc/green`` whose recorded commit is not
in the user's own clone of it (worktrees get submodules from there, never from the
network). Repository formats libgit2 cannot open (SHA-256, reftable, partial clones)
are refused earlier, by :func:`engine.gitops.repo.open_repository`.
Noted: a submodule the user never initialised (its folder stays empty in every
worktree); include patterns that select no git-ignored file.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence

import pygit2

from engine.gitops.errors import GitError
from engine.gitops.includes import include_patterns, included_files
from engine.gitops.repo import GitRepo, common_dir
from engine.gitops.submodules import gitlinks, source_of


def preflight(repo: GitRepo, include: Sequence[str], rev: str) -> list[str]:
    """Check ``repo`` at ``rev`` (``mc/green``, or the base branch before it exists);
    returns notes, raises :class:`GitError`."""
    if shutil.which("git") is None:
        raise GitError("the git command is not on PATH: mission control needs it (push, "
                       "atomic ref updates, submodules, and the agents use it); install git")
    notes: list[str] = []
    notes += _submodules(repo, repo.pygit.revparse_single(rev).peel(pygit2.Tree), rev)
    patterns = [p for p in include_patterns(repo.path, include)
                if p.strip() and not p.lstrip().startswith(("#", "!"))]
    if patterns and not included_files(repo.path, include):
        notes.append(
            "worktree includes (worktree.include / .worktreeinclude) select no git-ignored file "
            f"in {repo.path}: nothing is copied into the worktrees (patterns: {', '.join(patterns)})"
        )
    return notes


def _submodules(repo: GitRepo, tree: pygit2.Tree, rev: str) -> list[str]:
    notes: list[str] = []
    sources = common_dir(repo.pygit) / "modules"
    for sub in gitlinks(tree):
        source = source_of(sub, sources, repo.path)
        if source is None:
            notes.append(
                f"submodule {sub.path} is not initialised in {repo.path}: its folder stays empty "
                f"in every worktree (run `git submodule update --init {sub.path}` there to give "
                "the agents and the verification its files)"
            )
            continue
        try:
            present = pygit2.Oid(hex=sub.commit) in pygit2.Repository(str(source))
        except pygit2.GitError:
            present = False
        if not present:
            raise GitError(
                f"submodule {sub.path}: {rev} records commit {sub.commit[:12]}, which your "
                f"clone of it ({source}) does not have; worktrees take submodules from there, "
                f"never from the network: run `git submodule update --init {sub.path}` (or "
                f"`git -C {sub.path} fetch`) in {repo.path}"
            )
    return notes
