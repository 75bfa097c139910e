"""Run one unit: worktree, agent session(s), review gate, large-merge gate, submit to the queue."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import anyio

from engine import clock
from engine.agents import AgentResult, AgentRole, FailureReason, run_unit_agent
from engine.agents.types import COMPLETED
from engine.approvals import approve_or_deny
from engine.checks import (
    conflicted,
    conflicted_with_siblings,
    conflicts_on_green,
    conflicts_with_siblings,
    forbidden_change,
    precheck,
    precheck_passed,
    queue_verifies_at_once,
    record_rerun,
    repair_during_rerun,
)
from engine.gates.review import ReviewVerdict, review_unit
from engine.gitops import GitError, VerificationResult
from engine.ledger import Unit
from engine.models import UnitStatus
from engine.runtime import FatalAgentError, Recheck, Runtime
from engine.stacking import judged_on, plan_stack, requirements, stack_key

FATAL_REASONS = {
    FailureReason.AUTH: "the agent CLI is not authenticated (log in or set the API key), stopping",
    FailureReason.USAGE_LIMIT: "the agent's usage limit is reached, stopping until it resets",
}
BACKOFF_REASONS = {FailureReason.OVERLOADED, FailureReason.RATE_LIMIT, FailureReason.API_ERROR}
MAX_WORKER_ATTEMPTS = 3
CONTINUE_NOTE = (
    "A previous session on this unit was cut short by a restart. Its commits are already on "
    "this branch (a last `wip:` commit holds what it had not committed, possibly half-written "
    "files): check what is done and what is sound, then finish the unit from there."
)


@dataclass
class UnitRunResult:
    agent_ok: bool  # the session itself worked (a review rejection counts as working)
    retry_after: float | None = None  # overload / rate limit: wait this long before retrying


def unit_branch(unit_id: str) -> str:
    return f"mc/unit/{unit_id}"


async def run_unit(
    rt: Runtime, unit_id: str, slot: int, *, model: str | None = None, single_pass: bool = False,
    notes: list[str] | None = None,
    templates: Mapping[str, str] | None = None,
) -> UnitRunResult:
    """Take a READY unit to QUEUED (submitted) or to FAILED / READY (retry) with a reason.

    ``model`` replaces the worker model and ``single_pass`` skips the architect pass for this
    session (how an open circuit breaker degrades, see ``engine/resilience/breaker.py``);
    ``notes`` are the plugins' ``worker_notes`` (what earlier attempts learned);
    ``templates`` replace shipped prompt templates for it (prompt evolution).
    """
    try:
        return await _run_unit(rt, unit_id, slot, model=model, single_pass=single_pass,
                               notes=notes, templates=templates)
    finally:  # submitted, or it never will be
        rt.prechecks_skipped.discard(unit_id)


async def _run_unit(
    rt: Runtime, unit_id: str, slot: int, *, model: str | None, single_pass: bool,
    notes: list[str] | None, templates: Mapping[str, str] | None,
) -> UnitRunResult:
    store = rt.store
    unit = rt.units.require(unit_id)
    branch = unit_branch(unit_id)
    finished = finished_work(rt, unit)
    if finished is not None:
        # killed after its agent had finished (in review, at a gate): do not redo the work
        base, head = finished
        if rt.repo.ref_head(f"refs/heads/{branch}") != head:
            rt.repo.set_owned_ref(f"refs/heads/{branch}", head, "mc: unit branch after restart")
        rt.units.move(unit_id, UnitStatus.RUNNING, reason=None, resume_point=None)
        rt.log(f"unit {unit_id}: taking the work its agent finished before the restart on to "
               "review and the queue", unit_id=unit_id)
        return await review_and_submit(rt, unit_id, branch, base, head, unit.attempt_count)
    begin = await where_to_start(rt, unit, branch)
    if begin is None:
        return UnitRunResult(True)
    base, start, stacked_on = begin
    attempt_no = unit.attempt_count + 1
    rt.units.move(
        unit_id, UnitStatus.RUNNING, reason=None, attempt_count=attempt_no,
        branch=branch, base_commit=base, head_commit=None, resume_point=None,
        stacked_on=stacked_on,
    )
    config = rt.config
    if model and model != config.scheduler.model:
        config = config.model_copy(
            update={"scheduler": config.scheduler.model_copy(update={"model": model})}
        )
    if single_pass and config.agent.two_pass:
        config = config.model_copy(
            update={"agent": config.agent.model_copy(update={"two_pass": False})}
        )
    feedback = unit.review_feedback
    if start != base:
        rt.log(f"unit {unit_id}: continuing from the commits of the session a restart cut short",
               unit_id=unit_id)
        feedback = "\n\n".join(filter(None, [feedback, CONTINUE_NOTE]))
    ws = await rt.pool.acquire(branch, start)
    checked: VerificationResult | None = None
    rechecked: list[Recheck] = []  # its fixup round started on the precheck's first failure
    conflict: list[str] = []
    clash: tuple[dict[str, str], list[str]] = ({}, [])  # siblings' work it conflicts with

    def session_ended(result: AgentResult) -> None:
        # with a precheck, a finished agent's slot goes to the next unit at once: neither
        # judging its work (git, 70-100 ms) nor the checks below hold an agent
        if rt.config.target.verification.precheck and result.status == COMPLETED:
            rt.release_worker_slot(slot, unit_id)

    try:
        outcome = await run_unit_agent(
            store, rt.backend, config=config, mission_id=rt.mission_id,
            unit=rt.units.require(unit_id).row, objective=rt.objective,
            workdir=ws.path, base_commit=base, slot=slot,
            feedback=feedback, role=AgentRole.WORKER, notes=notes, templates=templates,
            on_session_end=session_ended,
        )
        if (outcome.status == "completed" and outcome.commits > 0 and outcome.head_commit
                and rt.config.target.verification.precheck
                and no_gate_before_queue(rt, base, outcome.head_commit)):
            # a conflict skips the precheck (review_and_submit checks again, after the gates)
            if not rt.repo.contains(outcome.head_commit, rt.repo.green_head()):
                conflict = await conflicts_on_green(rt, unit.title, outcome.head_commit,
                                                    stacked_on)
            if not conflict:
                clash = await conflicts_with_siblings(rt, unit_id, outcome.head_commit)
        if (rt.config.target.verification.precheck and outcome.status == "completed"
                and outcome.commits > 0 and not conflict and not clash[0]):
            # the agent's work is done: a crash during the precheck does not redo it
            store.update("units", unit_id, head_commit=outcome.head_commit)
            # and its worker slot goes to the next unit: a slot counts agents, and a
            # precheck held it for a whole verification (docs/scaling.md)
            rt.release_worker_slot(slot, unit_id)
            if queue_verifies_at_once(rt, stacked_on):
                rt.prechecks_skipped.add(unit_id)  # until it is submitted (run_unit)
                why = ("the merge queue verifies its branch at once" if rt.queue.verifies_at_once()
                       else "the mission's last work (nothing can queue behind it but repairs)")
                rt.log(f"unit {unit_id}: no precheck: {why}", unit_id=unit_id)
            else:
                judged, done = judged_on(stacked_on, base), str(outcome.head_commit)

                def repair_now(first: VerificationResult) -> Recheck | None:
                    if not no_gate_before_queue(rt, base, done):
                        return None  # a gate decides first, after the re-run (as before)
                    recheck = repair_during_rerun(rt, unit_id, branch, judged, done, first)
                    rechecked.extend([recheck] if recheck else [])
                    return recheck

                try:
                    async with rt.check_limiter:
                        checked = await precheck(rt, ws.path, judged, on_rejected=repair_now)
                    for recheck in rechecked:  # its fixup round waits for this verdict
                        record_rerun(rt, unit_id, judged, done, checked, recheck)
                finally:
                    for recheck in rechecked:
                        recheck.resolve(False)  # cut short: the round goes on (no-op if told)
    finally:
        with anyio.CancelScope(shield=True):
            await rt.pool.release(ws)

    if outcome.failure_reason in FATAL_REASONS:
        rt.units.move(unit_id, UnitStatus.READY, reason=str(outcome.failure_reason))
        raise FatalAgentError(FATAL_REASONS[outcome.failure_reason])

    if outcome.status != "completed" or outcome.commits == 0:
        reason = outcome.error or outcome.summary or f"agent ended {outcome.status}"
        if outcome.commits == 0 and outcome.status == "completed":
            reason = "the agent made no changes"
        retry = attempt_no < MAX_WORKER_ATTEMPTS and (
            outcome.failure_reason in BACKOFF_REASONS
            or outcome.failure_reason in (FailureReason.TIMEOUT, FailureReason.CRASH,
                                          FailureReason.BAD_OUTPUT)
        )
        rt.units.move(
            unit_id, UnitStatus.READY if retry else UnitStatus.FAILED,
            reason=f"attempt {attempt_no}: {reason}",
        )
        backoff = None
        if retry and outcome.failure_reason in BACKOFF_REASONS:
            backoff = rt.config.agent.retry_backoff_seconds * 2 ** (attempt_no - 1)
        return UnitRunResult(outcome.status in ("completed", "failed", "blocked"), backoff)

    head = outcome.head_commit
    if rechecked:  # in FIXUP, its head recorded: the round acts on the re-run (and may have
        return UnitRunResult(True)  # moved the unit on to its winner's head since)
    store.update("units", unit_id, head_commit=head)
    if conflict:
        conflicted(rt, unit_id, branch, head, conflict)
        return UnitRunResult(True)
    if clash[0]:
        conflicted_with_siblings(rt, unit_id, branch, head, *clash)
        return UnitRunResult(True)
    if checked is not None and not precheck_passed(rt, unit_id, branch,
                                                   judged_on(stacked_on, base), head, checked):
        return UnitRunResult(True)
    return await review_and_submit(rt, unit_id, branch, base, head, attempt_no)


async def where_to_start(rt: Runtime, unit: Unit, branch: str,
                         ) -> tuple[str, str, dict[str, Any] | None] | None:
    """(base, start, stacked_on) of a unit's next session (:func:`starting_point`; with
    ``[scheduler] stacked_branches``, a fresh start on dependencies whose agents are done but
    which are not merged yet is a stack base: ``engine/stacking.py``). None when it cannot start now: its stack could
    not be built, so it went back to PLANNED to wait for its dependencies to merge."""
    base, start = starting_point(rt, unit, branch)
    if start != base:  # a session cut short by a restart: its base (and stack) stay
        return base, start, unit.stacked_on
    stack = await plan_stack(rt, unit)
    if stack is None:  # every dependency is in mc/green
        return base, start, None
    if not rt.config.scheduler.stacked_branches:  # READY by a run that stacked: not now
        stack = "stacked_branches is off"
    if isinstance(stack, str):
        rt.stack_refused[unit.id] = stack_key(unit, rt.units.units(rt.mission_id))
        rt.units.move(unit.id, UnitStatus.PLANNED, reason=f"waits for its dependencies to "
                      f"merge: {stack}")
        return None
    rt.log(f"unit {unit.id}: stacked on {len(stack.heads)} unmerged dependenc"
           f"{'y' if len(stack.heads) == 1 else 'ies'} ({stack.base[:10]})", unit_id=unit.id)
    return stack.base, stack.base, stack.record()


def finished_work(rt: Runtime, unit: Unit) -> tuple[str, str] | None:
    """(base, head) of the work a crash caught after the agent had finished, if any."""
    base, head = unit.base_commit, unit.head_commit
    if unit.resume_point != "review" or not base or not head:
        return None
    try:
        return (base, head) if head != base and rt.repo.is_ancestor(base, head) else None
    except GitError:
        return None  # the commit is gone: the work is redone


def starting_point(rt: Runtime, unit: Unit, branch: str) -> tuple[str, str]:
    """(base, start): the commit the unit's change is measured from, and where its worktree starts.

    Normally both are the current ``mc/green``. A unit whose agent a crash killed after it had
    committed keeps that agent's base and starts from its branch's tip, so no commit is lost
    and the work is judged against the base it was built on. With nothing to keep it starts
    afresh on the newest ``mc/green`` (fewer conflicts).
    """
    green = rt.repo.green_head()
    base = unit.base_commit
    tip = rt.repo.ref_head(f"refs/heads/{branch}")
    if unit.resume_point != "continue" or not base or not tip or tip == base:
        return green, green
    try:
        if rt.repo.is_ancestor(base, tip):
            return base, tip
    except GitError:
        pass
    return green, green


async def review_and_submit(
    rt: Runtime, unit_id: str, branch: str, base: str, head: str, attempt_no: int,
    verdict: ReviewVerdict | None = None,
) -> UnitRunResult:
    """The review gate, the large-merge gate, then into the merge queue. ``verdict``: a review
    of this very diff already made (a speculation branch's), used instead of a new one."""
    problem = forbidden_change(rt, base, head)
    if problem:  # checked before (and without) the review gate: never a judgement call
        rt.units.move(unit_id, UnitStatus.REVIEWING)
        record_verdict(rt, unit_id, ReviewVerdict(0.0, 0.0, 0.0, 0.0, False, problem),
                       attempt_no, reason=f"rejected before review: {problem}")
        return UnitRunResult(True)
    if rt.config.review.gate_completion:
        rt.units.move(unit_id, UnitStatus.REVIEWING)
        if verdict is None:
            diff = rt.repo.diff_text(base, head)
            stat = rt.repo.diff_stat(base, head)
            verdict = await review_unit(
                rt.llm.ask, objective=rt.objective, unit=rt.units.require(unit_id).row,
                diff=diff, diffstat=stat.text, min_score=rt.config.review.min_review_score,
            )
        record_verdict(rt, unit_id, verdict, attempt_no)
        if not verdict.passed:
            return UnitRunResult(True)
    stat = rt.repo.diff_stat(base, head)
    if stat.insertions + stat.deletions > rt.config.hitl.large_merge_lines:
        allowed = await approve_or_deny(
            rt, "large_merge",
            f"merge {rt.units.require(unit_id).title} ({stat.insertions}+/{stat.deletions}-)",
            unit_id=unit_id, diffstat=stat.text, diff=rt.repo.diff_text(base, head),
        )
        if not allowed:
            rt.units.move(unit_id, UnitStatus.FAILED, reason="large merge not approved")
            return UnitRunResult(True)

    # after every gate (a fixup's winner passes only the fixup gate), and again: mc/green
    # may have moved during a precheck, the review or an approval
    unit = rt.units.require(unit_id)
    conflict = await conflicts_on_green(rt, unit.title, head, unit.stacked_on)
    if conflict:
        conflicted(rt, unit_id, branch, head, conflict)
        return UnitRunResult(True)
    siblings, paths = await conflicts_with_siblings(rt, unit_id, head)
    if siblings:  # a sibling's agent finished during its precheck, review or approval
        conflicted_with_siblings(rt, unit_id, branch, head, siblings, paths)
        return UnitRunResult(True)
    submit(rt, unit_id, branch, head)
    return UnitRunResult(True)


def no_gate_before_queue(rt: Runtime, base: str, head: str) -> bool:
    """Whether a change goes to the queue through no gate: no review gate, no large-merge
    approval, nothing :func:`forbidden_change` rejects. Only then may a conflict found when
    the agent is done send it to fixup at once (a fixup's winner passes only the fixup gate)."""
    if rt.config.review.gate_completion or forbidden_change(rt, base, head):
        return False
    stat = rt.repo.diff_stat(base, head)
    return stat.insertions + stat.deletions <= rt.config.hitl.large_merge_lines


def record_verdict(rt: Runtime, unit_id: str, verdict: ReviewVerdict, attempt_no: int,
                   reason: str | None = None) -> None:
    """Record a verdict (``review.scored``); a failing one sends the unit back to ``ready``
    with the feedback, or to ``failed`` when its review retries are used up."""
    store = rt.store
    with store.transaction():  # a rejection and its consequence land together
        store.update("units", unit_id, review_score=verdict.score,
                     review_feedback=verdict.feedback)
        rejections = rt.units.record_review(  # the event and the count, together
            unit_id, mission_id=rt.mission_id, passed=verdict.passed, score=verdict.score,
            alignment=verdict.alignment, approach=verdict.approach, tests=verdict.tests,
            feedback=verdict.feedback, attempt=attempt_no,
        )
        if not verdict.passed:
            reviews_left = rejections <= rt.config.review.max_review_retries
            rt.units.move(
                unit_id, UnitStatus.READY if reviews_left else UnitStatus.FAILED,
                reason=reason or f"review {verdict.score:.1f} < "
                f"{rt.config.review.min_review_score}: {verdict.feedback}",
            )


def review_rejections(rt: Runtime, unit_id: str) -> int:
    """How often the review gate rejected this unit (crashes and restarts do not count):
    the ledger's ``units.review_rejections``."""
    return rt.units.review_rejections(unit_id)


def submit(rt: Runtime, unit_id: str, branch: str, head: str) -> None:
    """Unit to QUEUED and into the merge queue, in one transaction. A stacked unit's merge
    requires the dependency heads it was built on that ``mc/green`` lacks (engine/stacking.py)."""
    requires = requirements(rt, rt.units.require(unit_id))
    with rt.store.transaction():
        rt.units.move(
            unit_id, UnitStatus.QUEUED, reason=None, head_commit=head, branch=branch
        )
        rt.queue.submit(unit_id, branch, head, requires)
    rt.store.append_event(
        "unit.submitted", mission_id=rt.mission_id, unit_id=unit_id, branch=branch,
        head=head, ts_submitted=clock.now(),
    )
