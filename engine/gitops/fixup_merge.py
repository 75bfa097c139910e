"""The git step of a fixup candidate's worktree: the unit's branch merged onto the
``mc/green`` the candidate starts from, conflict markers committed as they are so the agent
sees and resolves them (``engine/fixup.py``)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from engine.clock import git_date_env

GIT_IDENTITY = ["-c", "user.name=mc-agent", "-c", "user.email=mc-agent@localhost"]


def _git(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", **git_date_env()}
    return subprocess.run(
        ["git", *GIT_IDENTITY, *args], cwd=cwd, capture_output=True, text=True, env=env
    )


def prepare_candidate(workdir: Path, unit_head: str, unit_title: str) -> list[str]:
    """Merge the unit's commit into the candidate worktree; commit conflict markers if any.

    Returns the conflicting paths (empty when the merge was clean).
    """
    merge = _git(workdir, "merge", "--no-ff", "--no-edit", "-m", f"fixup: merge {unit_title}", unit_head)
    if merge.returncode == 0:
        return []
    conflicted = _git(workdir, "diff", "--name-only", "--diff-filter=U").stdout.split()
    _git(workdir, "add", "-A")
    _git(workdir, "commit", "--no-verify", "-m", f"fixup: merge {unit_title} (with conflict markers)")
    return conflicted
