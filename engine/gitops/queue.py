"""The merge queue: batch, verify once, bisect on failure, promote the good part.

Size: the batch, bisection and promotion steps share the journal and the crash-safety
invariants documented here; the verifier, the publisher, reconcile, the candidate chain and
the speculative pipeline are already their own modules.

One ``run_once`` takes up to ``batch_size`` queued merges and loops:

1. build the candidate chain in memory on ``mc/green`` (see ``candidate.py``);
   conflicting branches are set aside with their paths, the others still merge;
2. point ``mc/working`` at the top of the chain and verify it once in the verify
   worktree; on success fast-forward ``mc/green`` to it (promotion) and stop;
3. on failure verify the same commit once more (``flaky_reruns``): a pass then
   records the failed tests as flaky and promotes; else binary-search the chain for
   the first failing prefix (confirmed by a re-run too before anyone is blamed),
   promote the largest passing prefix, send the first breaking branch to fixup with
   the verification output, and go back to 1 with the branches that are left
   (including ones that only conflicted with the culprit).

With ``speculative_depth`` above 0 a run is pipelined instead (``speculative.py``):
batches verify in parallel on ``verify_slots`` verify worktrees, each built on the
candidate ahead of it, failed batches are split rather than bisected one step at a time,
and what was built on a failure is discarded.

"Passing" is judged against the baseline (``baseline.py``): the verification of the
``mc/green`` commit the candidate is built on. A run that fails only tests that fail
there too is accepted; only new failures are blamed.

Every step writes an intent to ``queue_journal`` before and an outcome after,
and every status change goes through ``Store.set_status``. ``mc/green`` moves only
by compare-and-swap to a commit whose verification row says ``passed``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import pygit2

from engine.gitops.baseline import Baseline, Verdict, judge
from engine.gitops.bisect import first_failing_prefix
from engine.gitops.candidate import Chain, build_chain
from engine.gitops.cli import run_git
from engine.gitops.errors import GitError
from engine.gitops.items import ChangeStage, NoUnits, QueueItem, QueueOutcome, UnitSink
from engine.gitops.journal import Journal, JournalHook
from engine.gitops.reconcile import reconcile_queue
from engine.gitops.repo import (
    GREEN_REF,
    WORKING_REF,
    GitRepo,
    cas_error,
    object_view,
    open_repository,
    update_ref_args,
)
from engine.gitops.speculative import CannotVerify, Speculation
from engine.gitops.testresults import TestResults
from engine.gitops.verifier import Verifier
from engine.gitops.verify import RemoteVerify, VerificationResult
from engine.models import MergeStatus, VerificationStatus
from engine.store.db import Store

REASON_TAIL = 4000
ACTIVE = (MergeStatus.MERGING.value, MergeStatus.VERIFYING.value)




MAX_VERIFICATION_ERRORS = 3


def _tail(text: str, limit: int = REASON_TAIL) -> str:
    return text if len(text) <= limit else "..." + text[-limit:]


class MergeQueue:
    """Serial-or-batched merge queue in front of ``mc/green``."""

    def __init__(
        self,
        repo: GitRepo,
        store: Store,
        *,
        mission_id: int | None,
        verify_command: str,
        verify_timeout: float,
        batch_size: int,
        verify_dir: Path,
        max_output_bytes: int = 65536,
        flaky_reruns: int = 1,
        include: Sequence[str] = (),
        units: UnitSink | None = None,
        speculative_depth: int = 0,
        verify_slots: int = 1,
        remote_verify: RemoteVerify | None = None,
    ) -> None:
        """``speculative_depth``: batches beyond the head that may verify at once, each on
        the candidate ahead of it (0: one batch at a time, bisected in place);
        ``verify_slots``: verify worktrees, so verifications running at once;
        ``remote_verify``: run verifications there (a Ray node), not in a verify worktree."""
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if speculative_depth < 0:
            raise ValueError("speculative_depth must be 0 or more")
        if verify_slots < 1:
            raise ValueError("verify_slots must be at least 1")
        self.repo = repo
        self.store = store
        self.mission_id = mission_id if mission_id is not None else self._standalone_mission()
        self.batch_size = batch_size
        self.speculative_depth = speculative_depth
        self.verify_slots = verify_slots
        self.flaky_reruns = flaky_reruns
        self.include = list(include)  # worktree.include globs (see includes.py)
        self.units: UnitSink = units or NoUnits()  # the ledger moves the units behind changes
        self.journal = Journal(store, self.mission_id)
        self._git = open_repository(repo.path)  # used only from worker threads, one at a time
        # the one writer of verification rows (baseline and candidates)
        self.verifier = Verifier(repo, store, open_repository(repo.path),
                                 mission_id=self.mission_id,
                                 command=verify_command, timeout=verify_timeout,
                                 verify_dir=Path(verify_dir).resolve(),
                                 max_output_bytes=max_output_bytes, include=self.include,
                                 remote=remote_verify)
        self._lock = anyio.Lock()
        self._verification_errors = 0
        self._running: Speculation | None = None  # the speculative run in flight, if any

    # the verification settings live in the verifier
    @property
    def verify_command(self) -> str:
        return self.verifier.command

    @verify_command.setter
    def verify_command(self, value: str) -> None:
        self.verifier.command = value

    @property
    def verify_timeout(self) -> float:
        return self.verifier.timeout

    @verify_timeout.setter
    def verify_timeout(self, value: float) -> None:
        self.verifier.timeout = value

    @property
    def max_output_bytes(self) -> int:
        return self.verifier.max_output_bytes

    @max_output_bytes.setter
    def max_output_bytes(self, value: int) -> None:
        self.verifier.max_output_bytes = value

    @property
    def verify_dir(self) -> Path:
        return self.verifier.verify_dir

    @property
    def journal_hook(self) -> JournalHook | None:
        return self.journal.hook

    @journal_hook.setter
    def journal_hook(self, hook: JournalHook | None) -> None:
        self.journal.hook = hook

    def _standalone_mission(self) -> int:
        """Merge rows need a mission; a queue used on its own gets one of its own."""
        return int(self.store.insert(
            "missions",
            {"objective": "merge queue (no mission)", "status": "running", "started_at": time.time()},
        ))

    # ------------------------------------------------------------------ submit
    def submit(self, unit_id: str | None, branch: str, head_commit: str,
               requires: Sequence[str] = ()) -> int:
        """Queue ``branch`` at ``head_commit``; returns the merge row id. ``requires``: commits
        the branch was built on that ``mc/green`` does not have yet (a stacked branch,
        ``engine/stacking.py``): it is merged only onto a candidate that contains them."""
        now = time.time()
        with self.store.transaction():
            merge_id = int(self.store.insert(
                "merges",
                {"mission_id": self.mission_id, "unit_id": unit_id, "branch": branch,
                 "head_commit": head_commit, "status": MergeStatus.QUEUED.value,
                 "requires": list(requires), "created_at": now, "updated_at": now},
            ))
            self.store.append_event(
                "merge.created", mission_id=self.mission_id, unit_id=unit_id,
                id=merge_id, branch=branch,
            )
        if self._running is not None:
            self._running.poke()
        return merge_id

    def pending(self) -> int:
        """Queued merges a run could take now (a stacked branch whose required commits are
        neither in ``mc/green`` nor queued ahead of it waits, and is not counted)."""
        return len(self._take(limit=0))

    def verifies_at_once(self) -> bool:
        """Whether a branch queued now would start its verification at once: no queued branch
        waits to be taken before it, and no run is in flight, or the speculative run in flight
        would take it on a free verify slot (:meth:`Speculation.has_room`)."""
        if self._lock.locked() and (self._running is None or not self._running.has_room()):
            return False
        return self.pending() == 0

    def held(self) -> list[QueueItem]:
        """Queued stacked branches no run can take yet (see :meth:`pending`)."""
        queued = self._queued()
        if not any(i.requires for i in queued):
            return []
        takeable = {i.merge_id for i in self._in_order(queued, self.repo.green_head())}
        return [i for i in queued if i.merge_id not in takeable]

    def _queued(self) -> list[QueueItem]:
        rows = self.store.query(
            "SELECT id, unit_id, branch, head_commit, requires FROM merges WHERE mission_id = ?"
            " AND status = ? ORDER BY id", (self.mission_id, MergeStatus.QUEUED.value))
        return [QueueItem(r["id"], r["unit_id"], r["branch"], r["head_commit"],
                          json.loads(r["requires"] or "[]")) for r in rows]

    def _take(self, limit: int | None = None, exclude: set[int] | frozenset[int] = frozenset(),
              on: str | None = None) -> list[QueueItem]:
        """The oldest ``limit`` (default ``batch_size``; 0: all) queued merges, without
        ``exclude``, that can be merged onto ``on`` (default ``mc/green``) in this order: a
        stacked branch's required commits must be in ``on`` or in a branch taken before it."""
        limit = self.batch_size if limit is None else limit
        items = [i for i in self._queued() if i.merge_id not in exclude]
        if any(i.requires for i in items):
            items = self._in_order(items, on or self.repo.green_head())
        return items[:limit] if limit else items

    def _in_order(self, items: list[QueueItem], on: str) -> list[QueueItem]:
        """The ``items`` that can merge onto ``on``, in a merge order: a stacked branch after
        the branches it requires (it may have been queued before them: its agent finished
        first), otherwise oldest first. Those whose requirements are nowhere are left out."""
        taken: list[QueueItem] = []
        left = list(items)
        while True:
            ready = [i for i in left if all(
                self.repo.contains(on, c) or any(self.repo.contains(t.head_commit, c) for t in taken)
                for c in i.requires)]
            if not ready:
                return taken
            taken.extend(ready)
            left = [i for i in left if i not in ready]

    # ------------------------------------------------------------------ status helpers
    def move_merge(self, item: QueueItem, status: MergeStatus, reason: str | None = None,
                    stage: ChangeStage | None = None, **fields: Any) -> None:
        """Move a merge row, and report the change's ``stage`` to the unit sink (one
        transaction)."""
        with self.store.transaction():
            row = self.store.get("merges", item.merge_id)
            if row is not None and row["status"] != status.value:
                self.store.set_status("merges", item.merge_id, status, reason=reason, **fields)
            elif fields:
                self.store.update("merges", item.merge_id, **fields)
            if stage is not None:
                extra = {"head_commit": item.head_commit} if stage == ChangeStage.MERGED else {}
                self.units.change_moved(item.unit_id, stage, reason, **extra)

    # ------------------------------------------------------------------ one batch
    async def run_once(self) -> QueueOutcome:
        """Merge, verify, bisect and promote one batch of queued branches."""
        async with self._lock:
            try:
                return await self._run_batch()
            except BaseException:
                self._requeue_interrupted()
                raise

    def _requeue_interrupted(self) -> None:
        """A batch that died half-way (git error, cancellation) leaves nothing in flight:
        the same reconciliation as at start-up (in mc/green -> promoted, else queued)."""
        try:
            self.reconcile()
        except Exception:  # never mask the original error
            pass

    async def _run_batch(self) -> QueueOutcome:
        if self.speculative_depth > 0:
            return await self._run_speculative()
        green = self.repo.green_head()
        outcome = QueueOutcome(green_before=green, green_after=green)
        items = self._take()
        if not items:
            return outcome
        batch_id = f"b{self.mission_id}-{uuid.uuid4().hex[:8]}"
        self.journal.write("batch", "intent", batch_id=batch_id,
                           merge_ids=[i.merge_id for i in items], green=green)
        for item in items:
            self.store.update("merges", item.merge_id, batch_id=batch_id)
        remaining = list(items)
        conflicts: dict[int, list[str]] = {}
        while remaining:
            green = self.repo.green_head()
            chain = await self._build(batch_id, green, remaining)
            by_id = {i.merge_id: i for i in remaining}
            for merge_id in chain.already_in:
                item = by_id[merge_id]
                self.move_merge(item, MergeStatus.SKIPPED, "already in mc/green",
                                 ChangeStage.MERGED)
                outcome.promoted.append(item)
            conflicts = chain.conflicts
            included = [by_id[link.key] for link in chain.links]
            if not included:
                break
            top = chain.prefix(len(included))
            try:
                result, verdict = await self._verify_confirmed(batch_id, top, included,
                                                               outcome, green)
                if verdict.accepted:
                    await self._promote(batch_id, green, top, included, outcome)
                    break
                good, bad, result, verdict = await self._bisect(batch_id, chain, included,
                                                                outcome, green, result, verdict)
            except CannotVerify as exc:
                return self._cannot_verify(batch_id, exc.result, outcome)
            if verdict.accepted:  # the first "failing" prefix passed its re-run: flaky
                good = bad
            if good:
                await self._promote(batch_id, green, chain.prefix(good), included[:good], outcome)
            if not verdict.accepted:
                self._fail(included[bad - 1], outcome, result.output, verdict)
            later = {i.merge_id for i in included[bad:]} | set(conflicts)
            remaining = [i for i in remaining if i.merge_id in later]
        for merge_id, paths in conflicts.items():
            item = next(i for i in items if i.merge_id == merge_id)
            reason = "conflict in " + ", ".join(paths)
            self.move_merge(item, MergeStatus.CONFLICT, reason, ChangeStage.FIXUP,
                             conflict_paths=paths)
            outcome.conflicts.append((item, paths))
        outcome.green_after = self.repo.green_head()
        self.set_working(outcome.green_after)
        self.journal.write("batch", "done", batch_id=batch_id, green=outcome.green_after,
                           promoted=[i.merge_id for i in outcome.promoted],
                           failed=[i.merge_id for i, _ in outcome.failed],
                           conflicts=[i.merge_id for i, _ in outcome.conflicts])
        return outcome

    async def _run_speculative(self) -> QueueOutcome:
        """The pipelined run (``speculative.py``): up to ``speculative_depth + 1`` batches
        at once, each verified on top of the candidate ahead of it."""
        green = self.repo.green_head()
        outcome = QueueOutcome(green_before=green, green_after=green)
        items = self._take(self.batch_size * (self.speculative_depth + 1))
        if not items:
            return outcome
        batch_id = f"b{self.mission_id}-{uuid.uuid4().hex[:8]}"
        self.journal.write("batch", "intent", batch_id=batch_id,
                           merge_ids=[i.merge_id for i in items], green=green,
                           speculative_depth=self.speculative_depth, slots=self.verify_slots)
        for item in items:
            self.store.update("merges", item.merge_id, batch_id=batch_id)
        try:
            await Speculation(self, batch_id, outcome).run(items)
        except CannotVerify as exc:
            return self._cannot_verify(batch_id, exc.result, outcome)
        outcome.green_after = self.repo.green_head()
        self.set_working(outcome.green_after)
        self.journal.write("batch", "done", batch_id=batch_id, green=outcome.green_after,
                           promoted=[i.merge_id for i in outcome.promoted],
                           failed=[i.merge_id for i, _ in outcome.failed],
                           conflicts=[i.merge_id for i, _ in outcome.conflicts],
                           discarded=outcome.discarded)
        return outcome

    def _cannot_verify(self, batch_id: str, result: VerificationResult,
                       outcome: QueueOutcome) -> QueueOutcome:
        """The verification could not run at all (a broken verify worktree, a missing
        directory): no branch is to blame. What is in flight goes back to the queue
        (promotions and culprits already recorded stay); the third time in a row is a
        :class:`GitError` (the mission cannot verify anything)."""
        self._verification_errors += 1
        self._requeue_interrupted()
        outcome.green_after = self.repo.green_head()
        self.journal.write("batch", "done", batch_id=batch_id, green=outcome.green_after,
                           error=_tail(result.output, 500),
                           promoted=[i.merge_id for i in outcome.promoted],
                           failed=[i.merge_id for i, _ in outcome.failed])
        message = (f"the verification could not run ({self._verification_errors} of "
                   f"{MAX_VERIFICATION_ERRORS} in a row); its branches are queued again: "
                   f"{_tail(result.output, 300)}")
        self.store.append_event("log", mission_id=self.mission_id, level="warning",
                                message=f"merge queue: {message}")
        if self._verification_errors >= MAX_VERIFICATION_ERRORS:
            raise GitError(
                f"the verification command could not run {self._verification_errors} "
                f"times in a row: {_tail(result.output, 500)}"
            )
        return outcome

    async def _build(self, batch_id: str, green: str, items: list[QueueItem]) -> Chain:
        self.journal.write("merge", "intent", batch_id=batch_id, base=green,
                           merge_ids=[i.merge_id for i in items])
        branches = [(i.merge_id, i.branch, i.head_commit) for i in items]
        requires = {i.merge_id: i.requires for i in items if i.requires}
        chain = await anyio.to_thread.run_sync(self._build_chain, green, branches, requires)
        by_id = {i.merge_id: i for i in items}
        for link in chain.links:
            self.move_merge(by_id[link.key], MergeStatus.MERGING, None, ChangeStage.MERGING,
                             candidate_commit=link.commit)
        for merge_id in chain.held:  # built on a branch this chain left out: back in line
            row = self.store.get("merges", merge_id)
            if row is not None and row["status"] != MergeStatus.QUEUED.value:
                self.move_merge(by_id[merge_id], MergeStatus.QUEUED,
                                "waits for the branch it is stacked on", ChangeStage.QUEUED)
        self.journal.write("merge", "done", batch_id=batch_id, base=green,
                           candidates={link.key: link.commit for link in chain.links},
                           conflicts=chain.conflicts)
        return chain

    def _build_chain(self, green: str, branches: list[tuple[int, str, str]],
                     requires: dict[int, list[str]] | None = None) -> Chain:
        """In a worker thread: merges on a handle that never reads the user's index, with
        the attributes (merge drivers) of ``green``'s tree."""
        tree = self._git[pygit2.Oid(hex=green)].peel(pygit2.Tree)
        return build_chain(object_view(self._git, attributes=tree), green, branches, requires)

    async def _bisect(
        self, batch_id: str, chain: Chain, included: list[QueueItem], outcome: QueueOutcome,
        green: str, top: VerificationResult, top_verdict: Verdict,
    ) -> tuple[int, int, VerificationResult, Verdict]:
        """(last good prefix, first bad prefix, its run and verdict). The first bad prefix is
        re-run before anyone is blamed (the top one already was): an accepted verdict then
        means it is flaky, not broken."""
        runs = {len(included): (top, top_verdict)}

        async def passes(k: int) -> bool:
            runs[k] = await self._verify(batch_id, chain.prefix(k), included[:k], outcome, green)
            return runs[k][1].accepted

        good, bad = await first_failing_prefix(len(included), passes)
        result, verdict = runs[bad]
        if bad < len(included):
            result, verdict = await self._confirm(batch_id, chain.prefix(bad), included[:bad],
                                                  outcome, green, result, verdict)
        return good, bad, result, verdict

    def _fail(self, item: QueueItem, outcome: QueueOutcome, output: str,
              verdict: Verdict | None = None) -> None:
        why = f" ({verdict.note})" if verdict is not None and verdict.note else ""
        reason = f"verification failed{why}:\n" + _tail(output)
        self.move_merge(item, MergeStatus.FAILED, reason, ChangeStage.FIXUP)
        outcome.failed.append((item, output))
        self.journal.write("culprit", "done", merge_id=item.merge_id)

    # ------------------------------------------------------------------ verification
    def baseline_of(self, commit: str) -> Baseline | None:
        """The baseline a candidate built on ``commit`` (an ``mc/green``) is judged against:
        the last verification with this command that established or promoted ``commit``.
        None when there is none (then the commit counts as green: every failure is blamed)."""
        rows = self.store.query(
            "SELECT * FROM verifications WHERE commit_sha = ? AND command = ? AND status IN "
            "('passed', 'failed', 'timeout') AND (batch_id = 'baseline' OR status = 'passed' "
            "OR accepted = 1) ORDER BY id DESC LIMIT 1",
            (commit, self.verify_command),
        )
        if not rows:
            return None
        row = dict(rows[0])
        if isinstance(row.get("failing_tests"), str):
            row["failing_tests"] = json.loads(row["failing_tests"])
        return Baseline.from_row(row)

    async def verify_baseline(self) -> Baseline:
        """Verify ``mc/green`` as it is, before any change: the reference the first candidates
        are judged against. Recorded as ``batch_id = 'baseline'`` rows and one
        ``baseline.recorded`` event. A red run is re-run (``flaky_reruns``): a pass makes the
        baseline green and records the failed tests as flaky; otherwise every test that
        failed in any run is a baseline failure. A run that cannot start at all gives a
        baseline with status ``error`` (blames nobody, judges nothing)."""
        green = self.repo.green_head()
        runs: list[VerificationResult] = []
        vid = 0
        for _ in range(1 + self.flaky_reruns):
            vid = self.verifier.start("baseline", green, baseline=True)
            result = await self.verifier.run(green)
            runs.append(result)
            readable = [r.failing for r in runs]
            if len(runs) > 1 and all(f is not None for f in readable):
                result = VerificationResult(result.status, result.exit_code, result.output,
                                            result.duration_s,
                                            TestResults(frozenset().union(*readable),
                                                        result.tests.tests, result.tests.source))
            self.verifier.record(vid, green, result, None, baseline=True)
            if result.status in (VerificationStatus.PASSED, VerificationStatus.ERROR):
                break
        if len(runs) > 1 and result.status == VerificationStatus.PASSED:
            self._record_flaky(green, runs[0], result, green)
        tail = "\n".join(result.output.strip().splitlines()[-8:])
        baseline = Baseline(green, result.status, result.exit_code, result.failing, vid, tail)
        self.store.append_event(
            "baseline.recorded", mission_id=self.mission_id, commit=green, status=result.status,
            exit_code=result.exit_code, verification_id=vid,
            failing=sorted(result.failing) if result.failing is not None else None,
            summary=baseline.describe(), output_tail=tail,
        )
        return baseline

    def judge(self, base: str, result: VerificationResult) -> Verdict:
        """``result`` of a candidate built on the ``mc/green`` commit ``base``, judged."""
        return judge(result, self.baseline_of(base))

    async def _verify_confirmed(
        self, batch_id: str, commit: str, items: list[QueueItem], outcome: QueueOutcome,
        green: str,
    ) -> tuple[VerificationResult, Verdict]:
        result, verdict = await self._verify(batch_id, commit, items, outcome, green)
        return await self._confirm(batch_id, commit, items, outcome, green, result, verdict)

    async def _confirm(
        self, batch_id: str, commit: str, items: list[QueueItem], outcome: QueueOutcome,
        green: str, result: VerificationResult, verdict: Verdict,
    ) -> tuple[VerificationResult, Verdict]:
        """A rejected run is re-run on the same commit (``flaky_reruns`` times at most) before
        it may blame anyone; a pass then records the tests that failed as flaky."""
        first = result
        for _ in range(self.flaky_reruns if not verdict.accepted else 0):
            result, verdict = await self._verify(batch_id, commit, items, outcome, green)
            if verdict.accepted:
                self._record_flaky(commit, first, result, green)
                break
        return result, verdict

    def _record_flaky(self, commit: str, failed: VerificationResult, passed: VerificationResult,
                      green: str) -> None:
        base = self.baseline_of(green)
        known = (base.failing or frozenset()) if base is not None else frozenset()
        tests = sorted((failed.failing or frozenset()) - (passed.failing or frozenset()) - known)
        what = ", ".join(tests) if tests else "flaky verification (no test names in its output)"
        self.store.append_event("verification.flaky", mission_id=self.mission_id, commit=commit,
                                tests=tests, exit_code=failed.exit_code)
        self.store.append_event("log", mission_id=self.mission_id, level="warning",
                                message=f"merge queue: flaky, not blamed: {what} "
                                f"(failed, then passed on a re-run of {commit[:10]})")

    async def _verify(self, batch_id: str, commit: str, items: list[QueueItem],
                      outcome: QueueOutcome, green: str) -> tuple[VerificationResult, Verdict]:
        """Verify ``commit`` once in the verify worktree, judge it against the baseline of
        ``green`` (the commit it is built on) and record both."""
        self.set_working(commit)
        for item in items:
            self.move_merge(item, MergeStatus.VERIFYING, None, ChangeStage.VERIFYING)
        vid = self.verifier.start(batch_id, commit)
        self.journal.write("verify", "intent", batch_id=batch_id, commit=commit,
                           verification_id=vid)
        result = await self.verifier.run(commit)
        outcome.verifications += 1
        verdict = (self.judge(green, result) if result.status != VerificationStatus.ERROR
                   else Verdict(False))
        self.verifier.record(vid, commit, result, verdict)
        self.journal.write("verify", "done", batch_id=batch_id, commit=commit,
                           verification_id=vid, status=result.status, accepted=verdict.accepted)
        if result.status == VerificationStatus.ERROR:
            raise CannotVerify(result)  # also during bisection: nobody is blamed for it
        self._verification_errors = 0
        return result, verdict

    def set_working(self, commit: str) -> None:
        if self.repo.ref_head(WORKING_REF) != commit:
            self.repo.set_owned_ref(WORKING_REF, commit, "mc: candidate")

    # ------------------------------------------------------------------ promotion
    async def _promote(self, batch_id: str, old: str, new: str, items: list[QueueItem],
                       outcome: QueueOutcome) -> None:
        """Fast-forward ``mc/green`` from ``old`` to the verified ``new``."""
        if not self._passed(new):
            raise RuntimeError(f"refusing to promote {new[:10]}: no passed verification")
        ids = [i.merge_id for i in items]
        note = self._acceptance_note(new)
        self.journal.write("promote", "intent", batch_id=batch_id, old=old, new=new, merge_ids=ids)
        name = self.repo.movable_ref(GREEN_REF)
        message = f"mc: promote {len(items)} branch(es)"
        run = await run_git(update_ref_args(name, new, old, message)[1:], self.repo.path)
        if run.returncode != 0:
            raise GitError(cas_error(name, new, old, run.output))
        self.journal.write("promote", "done", batch_id=batch_id, old=old, new=new, merge_ids=ids)
        with self.store.transaction():
            for item in items:
                self.move_merge(item, MergeStatus.PROMOTED, note, ChangeStage.MERGED)
            self.store.append_event("green.promoted", mission_id=self.mission_id, **{
                "from": old, "to": new, "units": [i.unit_id or i.branch for i in items],
                **({"note": note} if note else {})})
        outcome.promoted.extend(items)

    def _acceptance_note(self, commit: str) -> str | None:
        """Why ``commit`` was promoted without passing (None when it passed)."""
        rows = self.store.query(
            "SELECT status, note FROM verifications WHERE commit_sha = ? AND (status = ? OR "
            "accepted = 1) ORDER BY id DESC LIMIT 1", (commit, VerificationStatus.PASSED.value))
        return rows[0]["note"] if rows and rows[0]["status"] != "passed" else None

    def _passed(self, commit: str) -> bool:
        """A verification of ``commit`` passed, or was accepted against its baseline."""
        rows = self.store.query(
            "SELECT 1 FROM verifications WHERE commit_sha = ? AND (status = ? OR accepted = 1) "
            "LIMIT 1",
            (commit, VerificationStatus.PASSED.value),
        )
        return bool(rows)

    # ------------------------------------------------------------------ start-up
    def reconcile(self) -> list[str]:
        return reconcile_queue(self)
