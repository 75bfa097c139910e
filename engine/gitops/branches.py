"""Which branch ``mc/green`` starts from, and a clear error when it cannot be found.

With ``target.branch`` unset the base is the remote's default branch (the branch
``refs/remotes/<remote>/HEAD`` points at, as ``git clone`` records it), else the
branch checked out in the user's checkout. A branch that does not exist locally is
an error naming the local branches, saying whether ``<remote>/<name>`` exists and how
to base on it; a repository without commits says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pygit2

from engine.gitops.errors import GitError
from engine.gitops.repo import GitRepo

if TYPE_CHECKING:
    from engine.config import MissionConfig

OWN_PREFIX = "mc/"


@dataclass
class BaseBranch:
    """The resolved base branch: its short name and where the choice came from."""

    name: str
    source: str  # "target.branch" | "<remote>/HEAD" | "current branch"


def resolve_base_branch(repo: GitRepo, configured: str | None, remote: str = "origin") -> BaseBranch:
    """The local branch ``mc/green`` starts from. Raises :class:`GitError` phrased for the user."""
    pygit = repo.pygit
    local = _local_branches(pygit)
    if not local and pygit.head_is_unborn:
        raise GitError(
            f"{repo.path} has no commits yet: commit something first (for example "
            "`git commit --allow-empty -m 'initial commit'`), then start mc again"
        )
    if configured:
        name, source = configured.removeprefix("refs/heads/"), "target.branch"
    else:
        name, source = _default_branch(pygit, remote, local)
    if name not in local:
        raise GitError(_missing_message(repo, name, source, remote, local))
    return BaseBranch(name, source)


def apply_base_branch(config: MissionConfig, repo: GitRepo) -> BaseBranch:
    """Resolve the base branch and write it into ``config``: ``target.branch`` and, when
    unset, ``green_branch.push_branch`` (mc/green is pushed back to the branch it came from)."""
    base = resolve_base_branch(repo, config.target.branch, config.green_branch.remote)
    config.target.branch = base.name
    if config.green_branch.push_branch is None:
        config.green_branch.push_branch = base.name
    return base


def _local_branches(pygit: pygit2.Repository) -> list[str]:
    """Local branches with a commit, mc's own left out."""
    return sorted(b for b in pygit.branches.local if not b.startswith(OWN_PREFIX))


def _default_branch(pygit: pygit2.Repository, remote: str, local: list[str]) -> tuple[str, str]:
    try:
        target = pygit.references[f"refs/remotes/{remote}/HEAD"].target
    except (KeyError, pygit2.InvalidSpecError, ValueError):
        target = None
    if isinstance(target, str) and target.startswith(f"refs/remotes/{remote}/"):
        return target.removeprefix(f"refs/remotes/{remote}/"), f"{remote}/HEAD"
    if not pygit.head_is_detached:
        head = _symbolic_head(pygit)
        if head is not None and head.startswith("refs/heads/"):
            return head.removeprefix("refs/heads/"), "current branch"
    listed = ", ".join(local) or "(none)"
    raise GitError(
        f"target.branch is not set, {remote}/HEAD does not exist and HEAD is detached: "
        f"set target.branch to the branch mc/green should start from (local branches: {listed})"
    )


def _symbolic_head(pygit: pygit2.Repository) -> str | None:
    try:
        target = pygit.references["HEAD"].target
    except (KeyError, pygit2.GitError):
        return None
    return target if isinstance(target, str) else None


def _missing_message(repo: GitRepo, name: str, source: str, remote: str, local: list[str]) -> str:
    origin = f"refs/remotes/{remote}/{name}"
    where = {
        "target.branch": f"branch {name!r} (target.branch) not found in {repo.path}",
        "current branch": f"the current branch {name!r} of {repo.path} has no commits yet",
    }.get(source, f"branch {name!r} ({source}, the remote's default) not found in {repo.path}")
    lines = [where]
    lines.append(f"  local branches: {', '.join(local) if local else '(none)'}")
    if origin in repo.pygit.references:
        lines.append(
            f"  {remote}/{name} exists: base on it with `git branch {name} {remote}/{name}`, "
            f"or set target.branch to one of the local branches"
        )
    else:
        lines.append(
            f"  {remote}/{name} does not exist either: set target.branch to one of the local "
            "branches"
        )
    return "\n".join(lines)
