"""Publishing ``mc/green`` through the git CLI, so the user's credential helpers work.

Fast-forward only: the refspec has no ``+`` and ``--force`` is never passed, so a
remote that moved on rejects the push; that is reported, never forced.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine.gitops.cli import run_git

REJECTION_MARKERS = ("[rejected]", "non-fast-forward", "fetch first", "stale info", "! [remote rejected]")


@dataclass
class PushResult:
    ok: bool
    rejected: bool
    output: str

    @property
    def reason(self) -> str:
        return push_reason(self.output) if not self.ok else ""


def push_reason(output: str) -> str:
    """Why a push failed, in one line, from ``git push --porcelain`` output: the remote's
    reason on the ``!`` line (``[remote rejected] (branch is currently checked out)``,
    ``[rejected] (fetch first)``), else the last ``error:``/``fatal:`` line."""
    for line in output.splitlines():
        if line.startswith("!"):
            parts = line.split("\t")
            return " ".join(p.strip() for p in parts[2:]) or line.strip()
    errors = [line.strip() for line in output.splitlines()
              if line.strip().startswith(("error:", "fatal:", "remote: error:"))]
    if errors:
        picked = next((e for e in errors if "failed to push" not in e), errors[-1])
        return picked
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[-1] if lines else "git push failed"


async def push_green(
    repo_path: Path,
    *,
    remote: str,
    branch: str,
    green_ref: str = "refs/heads/mc/green",
    timeout: float = 300.0,
) -> PushResult:
    """``git push REMOTE mc/green:refs/heads/BRANCH`` (fast-forward only)."""
    refspec = f"{green_ref}:refs/heads/{branch}"
    run = await run_git(["push", "--porcelain", remote, refspec], Path(repo_path), timeout)
    output = run.output.strip()
    if run.returncode == 0:
        return PushResult(ok=True, rejected=False, output=output)
    rejected = any(marker in output for marker in REJECTION_MARKERS)
    return PushResult(ok=False, rejected=rejected, output=output)


async def fetch_remote(repo_path: Path, remote: str, branch: str) -> str | None:
    """Fetch ``REMOTE/BRANCH`` into ``refs/remotes/``; its sha, or None if unavailable."""
    tracking = f"refs/remotes/{remote}/{branch}"
    run = await run_git(
        ["fetch", "--no-tags", remote, f"+refs/heads/{branch}:{tracking}"], Path(repo_path), 300.0
    )
    if run.returncode != 0:
        return None
    sha = await run_git(["rev-parse", "--verify", "--quiet", f"{tracking}^{{commit}}"], Path(repo_path))
    return sha.output.strip() if sha.returncode == 0 else None
