"""The git layer: the target repo, the worktree pool, the merge queue, push.

Nothing here ever checks out, resets, stashes or cleans in the target's own
working tree, or moves the user's current branch; see docs/gitops.md.
"""

from engine.gitops.errors import GitError
from engine.gitops.pool import Workspace, WorkspacePool
from engine.gitops.push import PushResult, fetch_remote, push_green
from engine.gitops.queue import MergeQueue, QueueItem, QueueOutcome
from engine.gitops.repo import GREEN_REF, WORKING_REF, DiffStat, GitRepo
from engine.gitops.verify import VerificationResult, run_verification

__all__ = [
    "GREEN_REF",
    "WORKING_REF",
    "DiffStat",
    "GitError",
    "GitRepo",
    "MergeQueue",
    "PushResult",
    "QueueItem",
    "QueueOutcome",
    "VerificationResult",
    "Workspace",
    "WorkspacePool",
    "fetch_remote",
    "push_green",
    "run_verification",
]
