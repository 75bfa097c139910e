"""Start-up reconciliation of the merge queue's rows with the git refs.

Git refs are the truth for what is merged; the store records intent and outcome.
After a crash at any point this restores three promises:

* nothing is merged twice: a row whose head is already in ``mc/green`` is marked
  promoted (or skipped) and its unit merged, never merged again;
* nothing merged is lost: rows caught mid-flight go back to ``queued``; a row
  recorded as promoted whose head is not in ``mc/green`` is queued again;
* ``mc/green`` only holds verified commits: it only ever moves by compare-and-swap
  after a ``passed`` verification row exists, so there is nothing to undo; an
  interrupted verification is recorded as ``error`` and never promoted.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from engine.gitops.errors import GitError
from engine.gitops.items import ChangeStage, QueueItem
from engine.gitops.repo import WORKING_REF
from engine.models import MergeStatus, VerificationStatus

if TYPE_CHECKING:
    from engine.gitops.queue import MergeQueue
    from engine.gitops.repo import GitRepo


def reconcile_queue(queue: MergeQueue) -> list[str]:
    """Fix merge, verification and unit rows against ``mc/green``; returns notes."""
    store, repo, mission_id = queue.store, queue.repo, queue.mission_id
    notes: list[str] = []
    try:
        green = repo.green_head()
    except GitError:
        return ["mc/green does not exist yet; nothing to reconcile"]

    for row in store.rows("verifications", "mission_id = ? AND status = ?",
                          (mission_id, VerificationStatus.RUNNING.value)):
        store.set_status("verifications", row["id"], VerificationStatus.ERROR.value,
                         output=(row["output"] or "") + "\n[interrupted: mc stopped during verification]",
                         ended_at=time.time())
        notes.append(f"verification {row['id']} of {row['commit_sha'][:10]} was interrupted")

    for row in store.rows("merges", "mission_id = ? AND status IN (?, ?, ?, ?)",
                          (mission_id, MergeStatus.QUEUED.value, *_active(), MergeStatus.PROMOTED.value)):
        item = QueueItem(row["id"], row["unit_id"], row["branch"], row["head_commit"])
        in_green = _in_green(repo, item.head_commit, green)
        status = row["status"]
        if status == MergeStatus.PROMOTED.value:
            if not in_green:
                queue.move_merge(item, MergeStatus.QUEUED,
                                  "requeued: recorded as promoted but missing from mc/green")
                notes.append(f"merge {item.merge_id} ({item.branch}) was lost from mc/green; requeued")
            continue
        if in_green:
            final = MergeStatus.PROMOTED if status in _active() else MergeStatus.SKIPPED
            queue.move_merge(item, final, "reconciled: already in mc/green", ChangeStage.MERGED)
            notes.append(f"merge {item.merge_id} ({item.branch}) is already in mc/green: {final.value}")
        elif status in _active():
            queue.move_merge(item, MergeStatus.QUEUED, "requeued after an interrupted run",
                              ChangeStage.QUEUED)
            notes.append(f"merge {item.merge_id} ({item.branch}) was {status}; requeued")

    # units left merging/verifying without an active merge row: the ledger requeues them
    notes.extend(queue.units.requeue_orphans(queue.mission_id, _active()))
    for entry in queue.journal.open_intents("push"):
        notes.append(f"push of {entry['data'].get('commit', '')[:10]} was interrupted; push again")
    if repo.ref_head(WORKING_REF) != green:
        repo.set_owned_ref(WORKING_REF, green, "mc: reconcile working to green")
        notes.append("mc/working reset to mc/green")
    queue.journal.write("reconcile", "done", green=green, notes=notes)
    for note in notes:
        store.append_event("log", mission_id=mission_id, level="info", message=f"merge queue: {note}")
    return notes


def _active() -> tuple[str, str]:
    return (MergeStatus.MERGING.value, MergeStatus.VERIFYING.value)


def _in_green(repo: GitRepo, head: str | None, green: str) -> bool:
    return repo.contains(green, head) if head else False
