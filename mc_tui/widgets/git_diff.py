"""Diffs of a unit's branch (base_commit..head_commit) read with pygit2; no UI here."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

MAX_PATCH_CHARS = 400_000


@dataclass(frozen=True)
class UnitDiff:
    """A diff, or the reason there is none (``error``)."""

    stat: str = ""
    patch: str = ""
    files: int = 0
    insertions: int = 0
    deletions: int = 0
    error: str | None = None


def unit_diff(repo_path: str | Path, base: str | None, head: str | None) -> UnitDiff:
    """The diff between two commits of ``repo_path`` (cached per commit pair)."""
    if not base or not head:
        return UnitDiff(error="no commits recorded for this unit yet")
    return _diff(str(repo_path), base, head)


@lru_cache(maxsize=64)
def _diff(repo_path: str, base: str, head: str) -> UnitDiff:
    try:
        import pygit2

        repo = pygit2.Repository(repo_path)
        diff = repo.diff(repo.revparse_single(base), repo.revparse_single(head))
        diff.find_similar()
        stats = diff.stats
        stat = stats.format(pygit2.enums.DiffStatsFormat.FULL, 60)
        patch = diff.patch or ""
    except Exception as exc:  # repo gone, commit missing, not a repo ...
        return UnitDiff(error=f"diff unavailable: {type(exc).__name__}: {exc}")
    if len(patch) > MAX_PATCH_CHARS:
        patch = patch[:MAX_PATCH_CHARS] + "\n... (diff truncated)\n"
    return UnitDiff(
        stat=stat.rstrip(), patch=patch, files=stats.files_changed,
        insertions=stats.insertions, deletions=stats.deletions,
    )
