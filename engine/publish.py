"""Publishing ``mc/green``: push it to the remote branch, and when the remote moved on
meanwhile, merge the remote branch in through the merge queue and push again.

Fast-forward only, never forced. The remote's new commits enter ``mc/green`` as one more
change of the merge queue (merged onto ``mc/green``, verified and judged like a unit's
branch), so what is pushed has always been verified. A push that cannot be made (the
remote refuses it, the remote's commits conflict with ``mc/green`` or break the
verification, the gate says no) is a :class:`PushState` with the reason; the controller
turns it into the mission outcome "objective met, not pushed: <reason>" (exit code 3).
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.approvals import approve_or_deny
from engine.gitops.publisher import Publisher
from engine.models import MergeStatus
from engine.runtime import Runtime

MAX_ABSORB_ROUNDS = 3  # the remote may keep moving; then we give up for this epoch


@dataclass(frozen=True)
class PushState:
    pushed: bool
    reason: str = ""


def tracking_head(rt: Runtime) -> str | None:
    """The last known head of the remote branch (``refs/remotes/<remote>/<branch>``)."""
    gb = rt.config.green_branch
    ref = rt.repo.pygit.references.get(f"refs/remotes/{gb.remote}/{gb.push_branch}")
    return str(ref.resolve().target) if ref is not None else None


async def publish(rt: Runtime) -> PushState:
    """Bring the remote branch up to ``mc/green`` (behind the ``push`` gate): push; when it
    is rejected because the remote moved on, fetch the remote branch, merge it through the
    queue and push again (at most :data:`MAX_ABSORB_ROUNDS` times)."""
    gb = rt.config.green_branch
    for _ in range(MAX_ABSORB_ROUNDS):
        green = rt.repo.green_head()
        remote = tracking_head(rt)
        if remote is not None and rt.repo.is_ancestor(green, remote):
            return PushState(True)  # nothing to push
        base = rt.repo.ref_head(rt.config.target.branch) or green
        since = remote if remote is not None and rt.repo.is_ancestor(remote, green) else base
        stat = rt.repo.diff_stat(since, green)
        title = (f"push mc/green ({green[:10]}, {stat.files} files changed) to "
                 f"{gb.remote}/{gb.push_branch}")
        if not await approve_or_deny(rt, "push", title, diffstat=stat.text,
                                     diff=rt.repo.diff_text(since, green)):
            rt.store.append_event("push.result", mission_id=rt.mission_id, ok=False,
                                  rejected=False, output="push not approved",
                                  reason="the push was not approved", commit=green)
            return PushState(False, "the push was not approved")
        result = await Publisher(rt.queue).push(gb.remote, gb.push_branch)
        if result.ok:
            return PushState(True)
        rt.log(f"push failed: {result.reason}", level="warning")
        if not result.rejected:
            return PushState(False, f"git push failed: {result.reason}")
        absorbed = await absorb_remote(rt)
        if absorbed is not None:
            return PushState(False, absorbed)
        if rt.repo.green_head() == green:  # the remote did not move: it refuses the push itself
            return PushState(False, f"the remote rejected the push: {result.reason}")
    return PushState(False, f"the remote kept moving: still behind after {MAX_ABSORB_ROUNDS} "
                            "merges of its new commits")


async def absorb_remote(rt: Runtime) -> str | None:
    """Fetch the remote branch and, if it has commits ``mc/green`` lacks, merge them in
    through the queue (drained here). Returns why that failed, or None (merged, or the
    remote had nothing new)."""
    gb = rt.config.green_branch
    merge_id = await Publisher(rt.queue).absorb_remote(gb.remote, gb.push_branch)
    if merge_id is None:
        return None
    rt.log(f"{gb.remote}/{gb.push_branch} moved on during the mission: merging it into "
           "mc/green through the merge queue (verified) before pushing again")
    while rt.queue.pending():
        await rt.queue.run_once()
    row = rt.store.get("merges", merge_id) or {}
    where = f"{gb.remote}/{gb.push_branch}"
    if row.get("status") == MergeStatus.CONFLICT:
        paths = ", ".join(row.get("conflict_paths") or [])
        return (f"{where} moved on and its new commits conflict with mc/green in {paths}; "
                f"merge {where} into mc/green's work by hand, then push")
    if row.get("status") == MergeStatus.FAILED:
        return (f"{where} moved on and, merged with mc/green, its new commits fail the "
                "verification; see the merge queue")
    if row.get("status") not in (MergeStatus.PROMOTED, MergeStatus.SKIPPED):
        return f"{where} moved on and could not be merged ({row.get('status')})"
    return None
