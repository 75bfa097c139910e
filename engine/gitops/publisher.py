"""The publisher: pushes ``mc/green`` to the remote and syncs with a remote that moved on.

Fast-forward only, never forced, journaled (a push cut short by a crash is reported by the
start-up reconcile and offered again). A remote that moved on is fetched and its head
submitted to the merge queue like any branch, so what is pushed has always been verified.
``engine/publish.py`` decides when (after each epoch, behind the ``push`` gate).
"""

from __future__ import annotations

from engine.gitops.push import PushResult, fetch_remote, push_green
from engine.gitops.queue import MergeQueue


def _tail(text: str, limit: int) -> str:
    return text if len(text) <= limit else "..." + text[-limit:]


class Publisher:
    def __init__(self, queue: MergeQueue) -> None:
        self.queue = queue
        self.repo = queue.repo
        self.store = queue.store
        self.mission_id = queue.mission_id
        self.journal = queue.journal

    async def push(self, remote: str, branch: str) -> PushResult:
        """Push ``mc/green`` to ``remote``/``branch`` (fast-forward only), journaled."""
        green = self.repo.green_head()
        self.journal.write("push", "intent", remote=remote, branch=branch, commit=green)
        self.store.append_event("push.started", mission_id=self.mission_id, remote=remote,
                                branch=branch, commit=green)
        result = await push_green(self.repo.path, remote=remote, branch=branch)
        self.journal.write("push", "done", remote=remote, branch=branch, commit=green,
                           ok=result.ok, rejected=result.rejected)
        self.store.append_event("push.result", mission_id=self.mission_id, ok=result.ok,
                                rejected=result.rejected, output=_tail(result.output, 2000),
                                commit=green, reason=result.reason, remote=remote,
                                branch=branch)
        return result

    async def absorb_remote(self, remote: str, branch: str) -> int | None:
        """After a rejected push: fetch the remote and queue it, so the next batch
        builds on it (merged, verified and promoted like any branch)."""
        sha = await fetch_remote(self.repo.path, remote, branch)
        if sha is None or self.repo.is_ancestor(sha, self.repo.green_head()):
            return None
        return self.queue.submit(None, f"refs/remotes/{remote}/{branch}", sha)
