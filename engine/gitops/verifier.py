"""The verifier: the one writer of ``verifications`` rows, for the baseline and the queue.

``start`` records a running verification (row + ``verification.started``), ``run`` checks
the commit out in the verify worktree (with the ``worktree.include`` files) and runs the
command, ``record`` finishes the row (status, output, failing tests, verdict) with its
``verification.finished`` event, each write in one transaction.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import anyio
import pygit2

from engine.gitops.baseline import Verdict
from engine.gitops.includes import copy_included, included_files
from engine.gitops.repo import GitRepo
from engine.gitops.verify import VerificationResult, run_verification
from engine.gitops.worktrees import clean_checkout, ensure_worktree
from engine.models import VerificationStatus
from engine.store.db import Store

VERIFY_WORKTREE = "mc-verify"


class Verifier:
    def __init__(
        self, repo: GitRepo, store: Store, git: pygit2.Repository, *, mission_id: int,
        command: str, timeout: float, verify_dir: Path, max_output_bytes: int,
        include: Sequence[str] = (),
    ) -> None:
        self.repo = repo
        self.store = store
        self.git = git  # used only from worker threads, one at a time
        self.mission_id = mission_id
        self.command = command
        self.timeout = timeout
        self.verify_dir = verify_dir
        self.max_output_bytes = max_output_bytes
        self.include = list(include)

    def start(self, batch_id: str, commit: str, *, baseline: bool = False) -> int:
        """A ``running`` row and its ``verification.started`` event; returns the row id."""
        with self.store.transaction():
            vid = int(self.store.insert("verifications", {
                "mission_id": self.mission_id, "batch_id": batch_id, "commit_sha": commit,
                "command": self.command, "status": VerificationStatus.RUNNING.value,
                "started_at": time.time()}))
            extra = {"baseline": True} if baseline else {}
            self.store.append_event("verification.started", mission_id=self.mission_id,
                                    id=vid, commit=commit, status="running", **extra)
        return vid

    async def run(self, commit: str) -> VerificationResult:
        """Verify ``commit`` in the verify worktree; a run that cannot start is ``error``."""
        try:
            await anyio.to_thread.run_sync(self._checkout, commit)
            return await run_verification(self.command, self.verify_dir, self.timeout,
                                          self.max_output_bytes)
        except Exception as exc:  # a broken worktree must not wedge the queue
            return VerificationResult("error", None, f"verification could not run: {exc}", 0.0)

    def record(self, vid: int, commit: str, result: VerificationResult, verdict: Verdict | None,
               **extra: object) -> None:
        """Finish a verification row: status, output, failing tests and (for a candidate,
        not a baseline: ``verdict`` None) whether it was accepted and why."""
        failing = sorted(result.failing) if result.failing is not None else None
        accepted = int(verdict.accepted) if verdict is not None else None
        note = verdict.note if verdict is not None else ""
        with self.store.transaction():
            self.store.set_status(
                "verifications", vid, result.status, exit_code=result.exit_code,
                output=result.output, duration_s=round(result.duration_s, 3), ended_at=time.time(),
                failing_tests=failing, accepted=accepted, note=note or None,
            )
            self.store.append_event("verification.finished", mission_id=self.mission_id, id=vid,
                                    commit=commit, status=result.status,
                                    duration_s=round(result.duration_s, 3),
                                    accepted=accepted, note=note, **extra)

    def _checkout(self, commit: str) -> None:
        wt = ensure_worktree(self.git, VERIFY_WORKTREE, self.verify_dir)
        target = wt[pygit2.Oid(hex=commit)].peel(pygit2.Commit)
        clean_checkout(wt, target)
        copy_included(self.repo.path, Path(wt.workdir), Path(wt.path),
                      included_files(self.repo.path, self.include), target.tree)
