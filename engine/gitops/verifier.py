"""The verifier: the one writer of ``verifications`` rows, for the baseline and the queue.

``start`` records a running verification (row + ``verification.started``), ``run`` checks
the commit out in the verify worktree (with the ``worktree.include`` files) and runs the
command, ``record`` finishes the row (status, output, failing tests, verdict) with its
``verification.finished`` event, each write in one transaction.

Verification slots (``run(commit, slot=n)``) let the speculative queue verify several
candidates at once: slot 0 is the ``mc-verify`` worktree at ``verify_dir``, slot n the
``mc-verify-<n>`` worktree at ``<verify_dir>-<n>``, each checked out through its own
pygit2 handle (a handle is never used by two threads at once).

A ``remote`` runner (:class:`~engine.gitops.verify.RemoteVerify`, e.g. a Ray node, injected
by ``engine/wiring.py``) runs the command elsewhere instead; its result is recorded and
judged like a local one, with ``host`` (where it ran) in ``verification.finished``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

import anyio
import pygit2

from engine.gitops.baseline import Verdict
from engine.gitops.includes import copy_included, included_files
from engine.gitops.repo import GitRepo, open_repository
from engine.gitops.verify import RemoteVerify, VerificationResult, run_verification
from engine.gitops.worktrees import clean_checkout, ensure_worktree
from engine.models import VerificationStatus
from engine.store.db import Store

VERIFY_WORKTREE = "mc-verify"


class Verifier:
    def __init__(
        self, repo: GitRepo, store: Store, git: pygit2.Repository, *, mission_id: int,
        command: str, timeout: float, verify_dir: Path, max_output_bytes: int,
        include: Sequence[str] = (),
        remote: RemoteVerify | None = None,
    ) -> None:
        """``remote``: run the command there (a Ray node) instead of in a verify worktree."""
        self.repo = repo
        self.store = store
        self.git = git  # slot 0's handle: used only from worker threads, one at a time
        self._handles: dict[int, pygit2.Repository] = {0: git}
        self._handles_lock = threading.Lock()
        self.mission_id = mission_id
        self.command = command
        self.timeout = timeout
        self.verify_dir = verify_dir
        self.max_output_bytes = max_output_bytes
        self.include = list(include)
        self.remote = remote

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

    def slot_dir(self, slot: int = 0) -> Path:
        """The verify worktree of ``slot``: ``verify_dir``, else ``<verify_dir>-<slot>``."""
        return self.verify_dir if slot == 0 else self.verify_dir.with_name(
            f"{self.verify_dir.name}-{slot}")

    async def run(self, commit: str, slot: int = 0) -> VerificationResult:
        """Verify ``commit`` in the verify worktree of ``slot``; a run that cannot start is
        ``error``. Cancelling it kills the command's whole process group. With a
        ``remote`` runner the command runs there, and is recorded the same way."""
        try:
            if self.remote is not None:
                return await self.remote(commit, self.command, self.timeout,
                                         self.max_output_bytes)
            await anyio.to_thread.run_sync(self._checkout, commit, slot)
            return await run_verification(self.command, self.slot_dir(slot), self.timeout,
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
        if result.host:  # ran elsewhere: where, in the event
            extra = {"host": result.host, **extra}
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

    def _handle(self, slot: int) -> pygit2.Repository:
        with self._handles_lock:
            if slot not in self._handles:
                self._handles[slot] = open_repository(self.repo.path)
            return self._handles[slot]

    def _checkout(self, commit: str, slot: int = 0) -> None:
        name = VERIFY_WORKTREE if slot == 0 else f"{VERIFY_WORKTREE}-{slot}"
        wt = ensure_worktree(self._handle(slot), name, self.slot_dir(slot))
        target = wt[pygit2.Oid(hex=commit)].peel(pygit2.Commit)
        clean_checkout(wt, target)
        copy_included(self.repo.path, Path(wt.workdir), Path(wt.path),
                      included_files(self.repo.path, self.include), target.tree)
