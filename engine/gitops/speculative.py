"""The speculative merge queue: batches verify in parallel, each on top of the ones ahead.

Zuul's dependent pipeline, with batches as its items. The pipeline is a list of batches in
queue order; batch k is built on the candidate of batch k-1 (the head on ``mc/green``),
so batch k's top commit holds everything ahead of it. Up to ``speculative_depth + 1``
batches (the head and ``speculative_depth`` beyond it) verify at once, on at most
``verify_slots`` verify worktrees. Then, each time something changes:

* the head's top passed -> promote ``mc/green`` to it (compare-and-swap), pop it: strictly
  in queue order, and only a commit whose own verification passed, which holds every batch
  it was built on;
* a batch of several branches failed -> it is *split* into ``min(slots, depth + 1) + 1``
  contiguous parts (the last part's top is the commit that failed, so its result is
  known): the parts before it verify in parallel, a parallel bisection that promotes the
  passing prefix on the way; the batches behind the failed one are *discarded* (their
  verification processes killed, whole process group): they hold the failure;
* the head is a single branch that failed -> it becomes the *suspect*: the batches behind
  it are rebuilt on its base (without it) and verify while the suspect's commit is re-run
  (``flaky_reruns``): still failing -> the branch is the culprit (``failed``, unit to
  fixup) and the rebuilt tail is already on the right base; passing -> flaky: it is
  promoted and the tail is rebuilt on it again. With ``flaky_reruns = 0`` the culprit is
  blamed at once and the tail rebuilt on its base.

A run takes ``(speculative_depth + 1) * batch_size`` queued branches and keeps the
pipeline filled from the queue (one batch at a time) until it has blamed a culprit; it
ends when the pipeline is empty, like ``run_once`` at depth 0. Branches that conflict are
set aside and merged again at every rebuild (they may only have conflicted with the
culprit); those still conflicting at the end become ``conflict``.

Crash safety: speculative candidates exist only in memory and in the object store; the
journal (``speculate``, ``verify``, ``discard`` steps) says which were in flight. After a
``kill -9`` the usual reconciliation applies (in-flight rows -> ``queued``, running
verifications -> ``error``, ``mc/working`` -> ``mc/green``) and the next run rebuilds the
candidates from ``mc/green``: they are never resumed, so nothing unverified survives.

Size: the build, split, suspect, discard and promote steps share one pipeline state and
its invariants (the list of batches in queue order); splitting them would pass that state
around between modules.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from engine.gitops.baseline import Verdict
from engine.gitops.items import ChangeStage, QueueItem, QueueOutcome
from engine.gitops.verify import VerificationResult
from engine.models import MergeStatus, VerificationStatus

if TYPE_CHECKING:
    from engine.gitops.queue import MergeQueue


class CannotVerify(Exception):
    """A verification ended in ``error`` (could not run): it says nothing about its commit."""

    def __init__(self, result: VerificationResult) -> None:
        super().__init__(result.output)
        self.result = result


@dataclass
class Batch:
    """Contiguous branches of the pipeline; ``commits[i]`` is the candidate after item i."""

    items: list[QueueItem]
    commits: list[str]
    base: str  # the candidate this batch is built on
    root: str  # the mc/green its chain was built on: the baseline it is judged against
    suspect: bool = False  # a failed single-branch head: the batches behind skip it

    @property
    def top(self) -> str:
        return self.commits[-1]

    @property
    def after(self) -> str:
        """What the next batch is built on: this top, or the base of a suspect."""
        return self.base if self.suspect else self.top


@dataclass
class Job:
    """One verification in flight on a verify slot."""

    commit: str
    slot: int
    vid: int
    root: str
    merge_ids: list[int]
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    discarded: bool = False


class Speculation:
    """One speculative run of the queue (see the module docstring)."""

    def __init__(self, queue: MergeQueue, batch_id: str, outcome: QueueOutcome) -> None:
        self.q = queue
        self.batch_id = batch_id
        self.outcome = outcome
        self.depth = queue.speculative_depth
        self.width = max(1, min(queue.verify_slots, self.depth + 1))  # verifications at once
        self.pipeline: list[Batch] = []
        self.conflicts: dict[int, list[str]] = {}
        self.set_aside: dict[int, QueueItem] = {}  # conflicting items, retried at rebuilds
        self.conflicted_on: dict[int, str] = {}  # set-aside item -> the tip it conflicted on
        self.taken: dict[int, QueueItem] = {}  # every item this run took
        self.riders: dict[int, QueueItem] = {}  # head already in a candidate ahead
        self.passed: set[str] = set()
        self.accepted_runs: dict[str, VerificationResult] = {}
        self.failures: dict[str, list[tuple[VerificationResult, Verdict]]] = {}
        self.running: dict[str, Job] = {}
        self.alive = 0  # job tasks not ended yet (a discarded one holds its slot until then)
        self.free_slots = set(range(queue.verify_slots))
        self.error: VerificationResult | None = None
        self.blamed = False
        self._send: MemoryObjectSendStream[tuple[Job | None, VerificationResult | None]] | None = None
        self._tg: anyio.abc.TaskGroup | None = None

    # ------------------------------------------------------------------ the loop
    async def run(self, items: list[QueueItem]) -> None:
        """Drive ``items`` (and queued branches taken on the way) to promoted / failed /
        conflict. Raises :class:`CannotVerify` when a verification could not run (the jobs
        still in flight are cancelled first)."""
        for item in items:
            self.taken[item.merge_id] = item
        green = self.q.repo.green_head()
        await self._build_tail(0, green, green, items)
        send, receive = anyio.create_memory_object_stream[
            tuple[Job | None, VerificationResult | None]](math.inf)
        self._send = send
        self.q._running = self
        try:
            async with receive, anyio.create_task_group() as tg:
                self._tg = tg
                while True:
                    await self._settle()
                    if self.error is not None or not self.pipeline:
                        break
                    self._schedule()
                    if not self.alive:  # cannot happen: a pipeline always has work
                        raise RuntimeError("speculative merge queue stalled: "
                                           f"{[b.top[:10] for b in self.pipeline]}")
                    job, result = await receive.receive()
                    if job is not None:  # else: poke(), a branch was queued meanwhile
                        self._finished(job, result)
        finally:
            self.q._running = None
            for job in list(self.running.values()):
                self._discard(job, "the run ended")
        if self.error is not None:  # the caller requeues what is in flight
            raise CannotVerify(self.error)
        for merge_id in list(self.conflicts):
            self._conflict(merge_id)
        green = self.q.repo.green_head()
        for item in self.riders.values():
            if self.q.repo.is_ancestor(item.head_commit, green):
                self.q.move_merge(item, MergeStatus.SKIPPED, "already in mc/green",
                                  ChangeStage.MERGED)
                self.outcome.promoted.append(item)
            else:  # it rode on a candidate that was not promoted: next run
                self.q.move_merge(item, MergeStatus.QUEUED,
                                  "requeued: its head was in a candidate that was not promoted",
                                  ChangeStage.QUEUED)

    def poke(self) -> None:
        """A branch was queued: take it into this run now (a refill, when the pipeline has
        room and a verify slot is free), not when the next verification ends. In the fleet benchmark a branch queued
        while a 1.5 s verification ran waited for its end: a conflict it would have shown at
        once was declared 1.7 s late, a repaired branch waited 1 s to be verified."""
        if self._send is not None and len(self.free_slots) > 0:  # else it waits anyway, and
            try:                                # branches queued meanwhile join its batch
                self._send.send_nowait((None, None))
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass  # the run is ending: the next run takes the branch

    async def _settle(self) -> None:
        """Apply every consequence of the results so far: promote, blame, split, discard."""
        while self.error is None and self.pipeline:
            if not await self._step():
                break
        self._discard_unwanted()
        await self._refill()

    async def _step(self) -> bool:
        """One consequence of the results so far; False when there is none left."""
        head = self.pipeline[0]
        if head.top in self.passed:
            await self._promote_head()
            return True
        for index, batch in enumerate(self.pipeline):
            if batch.top not in self.failures or batch.top in self.passed:
                continue
            runs = self.failures[batch.top]
            if batch.suspect:  # the head, re-running: blamed once every re-run failed
                if len(runs) >= 1 + self.q.flaky_reruns:
                    await self._blame_head(runs[-1])
                    return True
                continue
            if len(batch.items) > 1:
                self._split(index)
                return True
            if index > 0:  # a single failed branch behind one not settled yet: wait
                return False
            if len(runs) >= 1 + self.q.flaky_reruns:
                await self._blame_head(runs[-1])
                return True
            batch.suspect = True
            self.q.journal.write("speculate", "suspect", batch_id=self.batch_id,
                                 merge_id=batch.items[0].merge_id, commit=batch.top)
            rest = [i for b in self.pipeline[1:] for i in b.items]
            self._drop_tail(1, "rebuilt without a suspected culprit")
            await self._build_tail(1, batch.base, batch.root, rest)
            return True
        return False

    def _blocked_after(self) -> int:
        """Index of the first failed batch that the ones behind are built on."""
        for index, batch in enumerate(self.pipeline):
            if batch.top in self.failures and batch.top not in self.passed and not batch.suspect:
                return index
        return len(self.pipeline)

    # ------------------------------------------------------------------ promotion and blame
    async def _promote_head(self) -> None:
        head = self.pipeline.pop(0)
        flaky = self.failures.get(head.top)
        if flaky and head.top in self.accepted_runs:  # failed, then passed on a re-run
            self.q._record_flaky(head.top, flaky[0][0], self.accepted_runs[head.top], head.root)
        await self.q._promote(self.batch_id, head.base, head.top, head.items, self.outcome)
        self._settle_conflicts()
        if head.suspect and self.pipeline:  # the tail was built without it: build it on it
            rest = [i for b in self.pipeline for i in b.items]
            self._drop_tail(0, "rebuilt on a flaky branch that passed its re-run")
            await self._build_tail(0, head.top, head.top, rest)

    def _settle_conflicts(self) -> None:
        """Declare the set-aside items whose conflict is now against ``mc/green`` (the tip
        they conflicted on was promoted): their fixup starts at once rather than when this
        run ends, which a long run (the queue refills it) put off by 10 s and more."""
        green = self.q.repo.green_head()
        for merge_id in list(self.set_aside):
            tip = self.conflicted_on.get(merge_id)
            if tip is not None and (tip == green or self.q.repo.is_ancestor(tip, green)):
                self._conflict(merge_id)

    def _conflict(self, merge_id: int) -> None:
        """A set-aside item's conflict is final: to CONFLICT, its unit to fixup."""
        paths = self.conflicts.pop(merge_id)
        self.set_aside.pop(merge_id, None)
        self.conflicted_on.pop(merge_id, None)
        item = self.taken[merge_id]
        reason = "conflict in " + ", ".join(paths)
        self.q.move_merge(item, MergeStatus.CONFLICT, reason, ChangeStage.FIXUP,
                          conflict_paths=paths)
        self.outcome.conflicts.append((item, paths))

    async def _blame_head(self, run: tuple[VerificationResult, Verdict]) -> None:
        head = self.pipeline.pop(0)
        result, verdict = run
        self.q._fail(head.items[0], self.outcome, result.output, verdict)
        self.blamed = True
        if not head.suspect:  # flaky_reruns = 0: the tail holds the culprit
            rest = [i for b in self.pipeline for i in b.items]
            self._drop_tail(0, "rebuilt without the culprit")
            await self._build_tail(0, head.base, head.root, rest)
        # a suspect's tail is already built without it (conflicts retried then)

    def _split(self, index: int) -> None:
        batch = self.pipeline[index]
        n = len(batch.items)
        parts = min(n, self.width + 1)
        bounds = [round(k * n / parts) for k in range(parts + 1)]
        pieces: list[Batch] = []
        base = batch.base
        for lo, hi in zip(bounds, bounds[1:], strict=False):
            if hi <= lo:
                continue
            pieces.append(Batch(batch.items[lo:hi], batch.commits[lo:hi], base, batch.root))
            base = batch.commits[hi - 1]
        self.pipeline[index:index + 1] = pieces
        self.q.journal.write("speculate", "split", batch_id=self.batch_id, failed=batch.top,
                             parts=[[i.merge_id for i in p.items] for p in pieces])

    # ------------------------------------------------------------------ building
    async def _build_tail(self, index: int, base: str, root: str,
                          items: list[QueueItem]) -> None:
        """Build ``items`` (plus the set-aside conflicting ones) on ``base`` as the batches
        from ``index`` on."""
        retry = [*self.set_aside.values(), *self.riders.values()]
        self.set_aside.clear()
        self.riders.clear()
        before: dict[int, str] = {}  # where the retried items conflicted so far
        for item in retry:
            self.conflicts.pop(item.merge_id, None)
            if item.merge_id in self.conflicted_on:
                before[item.merge_id] = self.conflicted_on.pop(item.merge_id)
        todo = sorted([*items, *retry], key=lambda i: i.merge_id)
        if not todo:
            return
        if any(i.requires for i in todo):  # stacked branches after what they require
            mergeable = self.q._in_order(todo, base)
            todo = mergeable + [i for i in todo if i not in mergeable]  # the rest is held
        chain = await self.q._build(self.batch_id, base, todo)
        by_id = {i.merge_id: i for i in todo}
        for merge_id in chain.held:  # stacked on a branch left out above: a later run takes it
            self.taken.pop(merge_id, None)
        green = self.q.repo.green_head()
        for merge_id in chain.already_in:
            item = by_id[merge_id]
            if item.head_commit and self.q.repo.is_ancestor(item.head_commit, green):
                self.q.move_merge(item, MergeStatus.SKIPPED, "already in mc/green",
                                  ChangeStage.MERGED)
                self.outcome.promoted.append(item)
            else:  # in a candidate ahead, not promoted yet: settled when the run ends
                self.riders[merge_id] = item
        links = chain.links
        tip = links[-1].commit if links else base  # every conflict is against a part of it
        for merge_id, paths in chain.conflicts.items():
            self.conflicts[merge_id] = paths
            self.set_aside[merge_id] = by_id[merge_id]
            # a refill retries it on a longer chain: the tip it first conflicted on is still
            # under it, and settles the conflict once promoted (the newest tip would keep
            # moving while the queue keeps the run going)
            old = before.get(merge_id)
            kept = old is not None and (old == base or self.q.repo.is_ancestor(old, base))
            self.conflicted_on[merge_id] = old if kept and old is not None else tip
        await self._conflicts_with_green(list(chain.conflicts), by_id)
        batches: list[Batch] = []
        size = self.q.batch_size
        current = base
        for start in range(0, len(links), size):
            part = links[start:start + size]
            batches.append(Batch([by_id[link.key] for link in part],
                                 [link.commit for link in part], current, root))
            current = part[-1].commit
        self.pipeline[index:] = batches
        if batches:
            self.q.journal.write("speculate", "built", batch_id=self.batch_id, base=base,
                                 batches=[[i.merge_id for i in b.items] for b in batches],
                                 tops=[b.top for b in batches])

    async def _conflicts_with_green(self, merge_ids: list[int],
                                    by_id: dict[int, QueueItem]) -> None:
        """Declare now the conflicts of ``merge_ids`` that are against ``mc/green`` itself
        (a branch merged after they were queued): every candidate contains ``mc/green``, so
        no failure ahead can lift them. Otherwise a conflict waits for the tip it met to be
        promoted (it may be against a candidate that fails): in the fleet benchmark a branch
        taken onto a candidate that was ``mc/green`` plus three branches waited 1.6 s for
        their verification, on the mission's critical chain. A stacked branch whose required
        heads are not all in ``mc/green`` waits as before (its conflict may be theirs)."""
        green = self.q.repo.green_head()
        for merge_id in merge_ids:
            item = by_id[merge_id]
            if self.conflicted_on.get(merge_id) == green:  # met on mc/green alone
                self._conflict(merge_id)
                continue
            if not all(self.q.repo.contains(green, head) for head in item.requires):
                continue
            alone = await anyio.to_thread.run_sync(
                self.q._build_chain, green, [(merge_id, item.branch, item.head_commit)])
            if merge_id in alone.conflicts:
                self.conflicts[merge_id] = alone.conflicts[merge_id]
                self._conflict(merge_id)

    def has_room(self) -> bool:
        """Whether a branch queued now would be taken and verified at once: a verify slot is
        free and the pipeline has room (what :meth:`_refill` checks) and is not behind a
        failure."""
        return bool(self.free_slots) and self._can_refill()

    def _can_refill(self) -> bool:
        return (self.error is None and not self.blamed and bool(self.pipeline)
                and len(self.pipeline) < self.depth + 1
                and self._blocked_after() == len(self.pipeline))  # not behind a failure

    async def _refill(self) -> None:
        """Keep ``depth + 1`` batches in the pipeline from the queue until a culprit is
        blamed (its fixup then starts when this run ends)."""
        while self._can_refill():
            items = self.q._take(exclude=set(self.taken), on=self.pipeline[-1].after)
            if not items:
                return
            for item in items:
                self.taken[item.merge_id] = item
                self.q.store.update("merges", item.merge_id, batch_id=self.batch_id)
            self.q.journal.write("batch", "extend", batch_id=self.batch_id,
                                 merge_ids=[i.merge_id for i in items])
            last = self.pipeline[-1]
            await self._build_tail(len(self.pipeline), last.after, last.root, items)

    # ------------------------------------------------------------------ verification jobs
    def _schedule(self) -> None:
        """Start verifications: from the head, up to ``depth`` batches beyond it, never past
        a failed batch, one per free slot."""
        blocked = self._blocked_after()
        for position, batch in enumerate(self.pipeline[:self.depth + 1]):
            if position > blocked or not self.free_slots:
                break
            if batch.top in self.running or batch.top in self.passed:
                continue
            failed = self.failures.get(batch.top)
            if failed and not (position == 0 and batch.suspect):
                continue
            self._start(batch, position)
        deepest = [b.top for b in self.pipeline if b.top in self.running]
        if deepest:
            self.q.set_working(deepest[-1])

    def _start(self, batch: Batch, position: int) -> None:
        slot = min(self.free_slots)
        self.free_slots.discard(slot)
        for item in batch.items:
            self.q.move_merge(item, MergeStatus.VERIFYING, None, ChangeStage.VERIFYING)
        vid = self.q.verifier.start(self.batch_id, batch.top)
        job = Job(batch.top, slot, vid, batch.root, [i.merge_id for i in batch.items])
        self.running[batch.top] = job
        self.q.journal.write("verify", "intent", batch_id=self.batch_id, commit=batch.top,
                             verification_id=vid, slot=slot, position=position,
                             speculative=position > 0 or batch.base != batch.root,
                             rerun=batch.top in self.failures)
        assert self._tg is not None
        self.alive += 1
        self._tg.start_soon(self._job, job)

    async def _job(self, job: Job) -> None:
        result: VerificationResult | None = None
        with job.scope:
            result = await self.q.verifier.run(job.commit, slot=job.slot)
        assert self._send is not None
        await self._send.send((job, result))

    def _finished(self, job: Job, result: VerificationResult | None) -> None:
        self.alive -= 1
        self.free_slots.add(job.slot)
        if self.running.get(job.commit) is job:
            del self.running[job.commit]
        if job.discarded or result is None:
            return
        self.outcome.verifications += 1
        error = result.status == VerificationStatus.ERROR
        verdict = Verdict(False) if error else self.q.judge(job.root, result)
        self.q.verifier.record(job.vid, job.commit, result, verdict)
        self.q.journal.write("verify", "done", batch_id=self.batch_id, commit=job.commit,
                             verification_id=job.vid, status=result.status,
                             accepted=verdict.accepted)
        if error:
            self.error = result
            for other in list(self.running.values()):
                self._discard(other, "another verification could not run")
            return
        self.q._verification_errors = 0
        if verdict.accepted:
            self.passed.add(job.commit)
            self.accepted_runs[job.commit] = result
        else:
            self.failures.setdefault(job.commit, []).append((result, verdict))

    # ------------------------------------------------------------------ discarding
    def _wanted(self) -> set[str]:
        blocked = self._blocked_after()
        return {b.top for b in self.pipeline[:blocked + 1]}

    def _discard_unwanted(self) -> None:
        wanted = self._wanted()
        for job in list(self.running.values()):
            if job.commit not in wanted:
                self._discard(job, "built on a candidate that failed or was rebuilt")

    def _drop_tail(self, index: int, why: str) -> None:
        """Forget the batches from ``index`` on (their items are rebuilt by the caller);
        their verifications in flight are cancelled."""
        doomed = {b.top for b in self.pipeline[index:]}
        for job in list(self.running.values()):
            if job.commit in doomed:
                self._discard(job, why)
        del self.pipeline[index:]

    def _discard(self, job: Job, why: str) -> None:
        """Cancel ``job`` (its process group is killed as its task unwinds; the slot is free
        once the task has ended) and record its row as ``cancelled``."""
        if job.discarded:
            return
        job.discarded = True
        job.scope.cancel()
        self.outcome.discarded += 1
        del self.running[job.commit]
        self.q.verifier.record(job.vid, job.commit,
                               VerificationResult(VerificationStatus.CANCELLED.value, None,
                                                  f"[discarded: {why}]", 0.0), None)
        self.q.journal.write("discard", "done", batch_id=self.batch_id, commit=job.commit,
                             verification_id=job.vid, reason=why)
        self.q.store.append_event("queue.discarded", mission_id=self.q.mission_id,
                                  commit=job.commit, verification_id=job.vid,
                                  merge_ids=job.merge_ids, reason=why)
