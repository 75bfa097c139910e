"""Speculation branching: several agents work one unit in parallel; the best branch goes on.

With ``[speculation] enabled``, a unit the planner marked ``uncertain`` (every unit with
``units = "all"``) is worked by ``branch_count`` agents at once, each in its own worktree on
its own branch (``mc/spec/<unit>/<attempt>-<n>``) from the same ``mc/green``, each told a
different approach (:data:`SPECULATION_APPROACHES`). Each branch is an attempt of the unit
(its own agent session, recorded in ``attempts`` and costed like any other). Then:

- every branch that produced a commit is verified in its worktree (unless ``selection =
  "review"``), judged against the baseline of the ``mc/green`` it started from, exactly as a
  fixup candidate is (:mod:`engine.fixup`);
- ``review`` and ``best_score`` review the branches whose review can change the outcome
  (:func:`engine.gates.fixup_select.review_contenders`);
- :func:`engine.gates.fixup_select.choose_winner` picks the winner under the policy; a branch
  whose change is forbidden (:func:`engine.checks.forbidden_change`) never wins;
- the unit's branch (``mc/unit/<id>``) is set to the winner's commit, which goes through the
  review gate (the winner's review is reused, not asked again), the large-merge gate and the
  merge queue like any unit's work (:func:`engine.dispatch.review_and_submit`).

Every worktree goes back to the pool as soon as its branch is scored (winner and losers:
the work lives on in the branch refs). Events: ``speculation.started``, one
``speculation.branch`` per branch, ``speculation.reviewed`` per review, and
``speculation.winner`` (``branch`` None when no branch produced usable work). The extra
branches run on slots beyond the workers' (:func:`speculation_slots`, reserved by
``engine.wiring``). A unit a restart caught after its winner was chosen is not branched again:
:func:`engine.dispatch.run_unit` takes the winner on to review.
"""

from __future__ import annotations

import traceback
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio

from engine.agents import AgentRole, FailureReason, run_unit_agent
from engine.checks import forbidden_change, precheck_passed
from engine.config import MissionConfig
from engine.dispatch import (
    BACKOFF_REASONS,
    FATAL_REASONS,
    MAX_WORKER_ATTEMPTS,
    UnitRunResult,
    finished_work,
    review_and_submit,
    run_unit,
    starting_point,
    unit_branch,
    where_to_start,
)
from engine.gates.fixup_select import (
    Candidate,
    choose_winner,
    count_lint_errors,
    needs_verification,
    parse_test_counts,
    review_contenders,
)
from engine.gates.review import ReviewVerdict, review_unit
from engine.gitops import run_verification
from engine.gitops.verify import VerificationResult
from engine.hosts import running_on
from engine.ledger import Unit
from engine.models import UnitStatus
from engine.runtime import FatalAgentError, Runtime
from engine.stacking import judged_on

SPECULATION_APPROACHES: list[str] = [
    "Take the most direct route: the smallest change that meets the acceptance criteria, "
    "following the code around it.",
    "Start from the tests: write or extend tests for the acceptance criteria first, watch them "
    "fail, then make them pass.",
    "Find the root cause and the cleanest design first (read the surrounding code and its "
    "callers), then implement that properly, even if the change is somewhat larger.",
    "Reuse what the codebase already has: look for existing helpers, patterns and similar "
    "features and build on them rather than adding new machinery.",
]
RETRY_REASONS = BACKOFF_REASONS | {FailureReason.TIMEOUT, FailureReason.CRASH,
                                   FailureReason.BAD_OUTPUT}


class UnitRunner(Protocol):
    def __call__(self, rt: Runtime, unit_id: str, slot: int, *, model: str | None = ...,
                 single_pass: bool = ..., notes: list[str] | None = ...,
                 templates: Mapping[str, str] | None = ...) -> Awaitable[UnitRunResult]: ...


def branch_count(config: MissionConfig, unit: Mapping[str, Any], speculate: bool = True) -> int:
    """How many agents work ``unit`` now: ``[speculation] branch_count`` for a unit it covers
    (``units = "uncertain"``: only those the planner marked), else 1. ``speculate`` False (a
    degraded mission) is always 1."""
    spec = config.speculation
    if not (speculate and spec.enabled) or spec.branch_count < 2:
        return 1
    if spec.units == "uncertain" and not unit.get("uncertain"):
        return 1
    return spec.branch_count


def speculation_slots(config: MissionConfig) -> int:
    """Slots (and pool worktrees) for the extra branches: ``branch_count - 1`` per worker."""
    spec = config.speculation
    if not spec.enabled or spec.branch_count < 2:
        return 0
    return (spec.branch_count - 1) * config.scheduler.parallel.num_workers


def runner_for(config: MissionConfig, unit: Mapping[str, Any], speculate: bool = True) -> UnitRunner:
    """:func:`engine.dispatch.run_unit`, or :func:`run_branches` for a unit that branches."""
    return run_branches if branch_count(config, unit, speculate) > 1 else run_unit


def branch_ref(unit_id: str, attempt_no: int, number: int) -> str:
    return f"mc/spec/{unit_id}/{attempt_no}-{number}"


@dataclass
class Branch:
    """One branch's run: its candidate (once scored), and how its session went."""

    number: int  # 1-based
    approach: str
    candidate: Candidate | None = None
    agent_status: str = "error"
    failure_reason: FailureReason | None = None
    error: str | None = None
    problem: str | None = None  # a forbidden change: never wins
    cost_usd: float = 0.0
    verdict: ReviewVerdict | None = None
    attempt_ids: list[int] = field(default_factory=list)
    checked: VerificationResult | None = None  # its verification, when one ran


async def run_branches(
    rt: Runtime, unit_id: str, slot: int, *, model: str | None = None, single_pass: bool = False,
    notes: list[str] | None = None, templates: Mapping[str, str] | None = None,
) -> UnitRunResult:
    """Take a READY unit to QUEUED through ``branch_count`` parallel branches, or to READY
    (retry) / FAILED with the reason when none produced usable work. ``slot`` is the
    dispatcher's (branch 1 runs on it); the other branches take slots beyond the workers'.
    Raises :class:`FatalAgentError` when a branch hit an auth or usage-limit failure."""
    store = rt.store
    unit = rt.units.require(unit_id)
    branch = unit_branch(unit_id)
    base, start = starting_point(rt, unit, branch)
    if finished_work(rt, unit) is not None or start != base:
        # a restart caught a chosen winner (or one session's commits): go on from there
        return await run_unit(rt, unit_id, slot, model=model, single_pass=single_pass,
                              notes=notes, templates=templates)
    begin = await where_to_start(rt, unit, branch)  # on a stack of queued dependencies?
    if begin is None:
        return UnitRunResult(True)
    base, _, stacked_on = begin
    spec = rt.config.speculation
    count = max(spec.branch_count, 1)
    attempt_no = unit.attempt_count + 1
    rt.units.move(unit_id, UnitStatus.RUNNING, reason=None, attempt_count=attempt_no,
                  branch=branch, base_commit=base, head_commit=None, resume_point=None,
                  stacked_on=stacked_on)
    config = _session_config(rt.config, model, single_pass)
    approaches = [SPECULATION_APPROACHES[i % len(SPECULATION_APPROACHES)] for i in range(count)]
    store.append_event("speculation.started", mission_id=rt.mission_id, unit_id=unit_id,
                       attempt=attempt_no, branches=count, selection=spec.selection,
                       approaches=approaches)
    branches = [Branch(i + 1, approaches[i]) for i in range(count)]
    fresh = rt.units.require(unit_id)

    async def play(b: Branch) -> None:
        """One branch; its own trouble (git, verification) loses it, not the unit."""
        try:
            await _play_branch(rt, b, fresh, base, attempt_no, slot if b.number == 1 else None,
                               config, notes, templates)
        except FatalAgentError:
            raise
        except Exception as exc:
            b.error = f"{type(exc).__name__}: {exc}"
            rt.log(f"speculation branch {b.number} of {unit.title} failed: {b.error}",
                   level="error", unit_id=unit_id,
                   traceback="".join(traceback.format_exception(exc))[-6000:])
        _record_branch(rt, unit_id, attempt_no, b)

    async with anyio.create_task_group() as tg:
        for b in branches:
            tg.start_soon(play, b)
    fatal = [b.failure_reason for b in branches if b.failure_reason in FATAL_REASONS]
    if fatal:
        rt.units.move(unit_id, UnitStatus.READY, reason=str(fatal[0]))
        raise FatalAgentError(FATAL_REASONS[fatal[0]])

    usable = [b for b in branches if b.candidate and b.candidate.head_commit and not b.problem]
    await _review_contenders(rt, fresh, base, usable, spec.selection)
    winner = choose_winner([b.candidate for b in usable if b.candidate], spec.selection)
    chosen = next((b for b in usable if winner and b.candidate is winner), None)
    if chosen is None:  # a forbidden change goes to the gate, which says why to its next try
        chosen = next((b for b in branches if b.problem and b.candidate), None)
    total = round(sum(b.cost_usd for b in branches), 6)
    if chosen is None or chosen.candidate is None or not chosen.candidate.head_commit:
        return _no_winner(rt, unit_id, attempt_no, branches, total)
    head = chosen.candidate.head_commit
    losers = [b.number for b in branches if b is not chosen]
    with store.transaction():
        rt.repo.set_owned_ref(f"refs/heads/{branch}", head,
                              f"mc: speculation winner (branch {chosen.number})")
        store.update("units", unit_id, head_commit=head)
        store.append_event(
            "speculation.winner", mission_id=rt.mission_id, unit_id=unit_id, attempt=attempt_no,
            branch=chosen.number, ref=branch_ref(unit_id, attempt_no, chosen.number),
            approach=chosen.approach, selection=spec.selection, head=head,
            verified=chosen.candidate.verified, review_score=chosen.candidate.review_score,
            problem=chosen.problem, losers=losers, cost_usd=total,
        )
    rt.log(f"unit {unit_id}: branch {chosen.number} of {count} wins ({spec.selection}); "
           f"branches {', '.join(map(str, losers))} lost; ${total:.2f} for all {count}",
           unit_id=unit_id)
    if (rt.config.target.verification.precheck and chosen.checked is not None
            and not precheck_passed(rt, unit_id, branch, judged_on(stacked_on, base), head,
                                    chosen.checked)):
        return UnitRunResult(True)  # the winner fails in its own worktree: to fixup, not the queue
    return await review_and_submit(rt, unit_id, branch, base, head, attempt_no,
                                   verdict=chosen.verdict)


async def _play_branch(
    rt: Runtime, b: Branch, unit: Unit, base: str, attempt_no: int,
    slot: int | None, config: MissionConfig, notes: list[str] | None,
    templates: Mapping[str, str] | None,
) -> None:
    """Run branch ``b``'s agent in a worktree of its own, score its work, give it all back."""
    unit_id = unit.id
    own_slot = slot is None
    if own_slot:
        slot = await rt.take_slot(range(rt.config.scheduler.parallel.num_workers, 10_000))
    assert slot is not None
    try:
        ws = await rt.pool.acquire(branch_ref(unit_id, attempt_no, b.number), base)
    except BaseException:
        if own_slot:
            rt.give_slot(slot)
        raise
    try:
        host = rt.hosts.host_of(slot) if rt.hosts else None
        with running_on(host):
            outcome = await run_unit_agent(
                rt.store, rt.backend, config=config, mission_id=rt.mission_id, unit=unit.row,
                objective=rt.objective, workdir=ws.path, base_commit=base, slot=slot,
                feedback=unit.review_feedback, role=AgentRole.WORKER, approach=b.approach,
                candidate=b.number, notes=notes, templates=templates,
            )
        b.agent_status, b.failure_reason = outcome.status, outcome.failure_reason
        b.cost_usd, b.attempt_ids = outcome.cost_usd, list(outcome.attempt_ids)
        if outcome.status != "completed" or outcome.commits == 0:
            b.error = outcome.error or outcome.summary or f"agent ended {outcome.status}"
            if outcome.commits == 0 and outcome.status == "completed":
                b.error = "the agent made no changes"
            return
        head = outcome.head_commit
        b.problem = forbidden_change(rt, base, head)
        stat = rt.repo.diff_stat(base, head)
        verified, passed, failed, lint = False, 0, 0, 0
        # verified for the ranking, or because the winner is prechecked (docs/gitops.md)
        if (needs_verification(rt.config.speculation.selection)
                or rt.config.target.verification.precheck) and not b.problem:
            result = await run_verification(
                rt.config.target.verification.command, ws.path,
                rt.config.target.verification.timeout, rt.config.merge_queue.max_output_bytes,
            )
            passed, failed = parse_test_counts(result.output, exit_code=result.exit_code)
            lint = count_lint_errors(result.output)
            await rt.baseline_recorded()  # the judgement needs it
            verified = rt.queue.judge(judged_on(unit.stacked_on, base), result).accepted
            b.checked = result
        b.candidate = Candidate(
            index=b.number - 1, approach=b.approach, verified=verified, tests_passed=passed,
            tests_failed=failed, lint_errors=lint, diff_lines=stat.insertions + stat.deletions,
            head_commit=head,
        )
    finally:
        if own_slot:
            rt.give_slot(slot)
        with anyio.CancelScope(shield=True):
            try:
                await rt.pool.release(ws)  # back to the pool, winner or loser
            except Exception as exc:  # a scored branch keeps its score
                rt.log(f"speculation branch {b.number}: could not detach its worktree: {exc}",
                       level="warning", unit_id=unit_id)


def _record_branch(rt: Runtime, unit_id: str, attempt_no: int, b: Branch) -> None:
    c = b.candidate
    rt.store.append_event(
        "speculation.branch", mission_id=rt.mission_id, unit_id=unit_id, attempt=attempt_no,
        branch=b.number, ref=branch_ref(unit_id, attempt_no, b.number), approach=b.approach,
        agent_status=b.agent_status, attempt_ids=b.attempt_ids, cost_usd=b.cost_usd,
        # not verified (selection = "review"): None, not a failure with 0 tests
        head=c.head_commit if c else None,
        verified=(c.verified if b.checked is not None else None) if c else False,
        tests_passed=c.tests_passed if c and b.checked is not None else None,
        tests_failed=c.tests_failed if c and b.checked is not None else None,
        lint_errors=c.lint_errors if c else 0, diff_lines=c.diff_lines if c else 0,
        problem=b.problem, error=(b.error or "")[:1000] or None,
    )


async def _review_contenders(rt: Runtime, unit: Unit, base: str,
                             usable: list[Branch], policy: str) -> None:
    """Review the branches whose review can change the outcome (in parallel)."""
    by_candidate = {id(b.candidate): b for b in usable}
    contenders = [by_candidate[id(c)] for c in
                  review_contenders([b.candidate for b in usable if b.candidate], policy)]
    if not contenders:
        return

    async def review(b: Branch) -> None:
        assert b.candidate is not None and b.candidate.head_commit is not None
        head = b.candidate.head_commit
        stat = rt.repo.diff_stat(base, head)
        b.verdict = await review_unit(
            rt.llm.ask, objective=rt.objective, unit=unit.row, diff=rt.repo.diff_text(base, head),
            diffstat=stat.text, min_score=rt.config.review.min_review_score,
        )
        b.candidate.review_score = b.verdict.score
        rt.store.append_event(
            "speculation.reviewed", mission_id=rt.mission_id, unit_id=unit.id,
            attempt=unit.attempt_count, branch=b.number, score=b.verdict.score,
            passed=b.verdict.passed, feedback=b.verdict.feedback[:1000],
        )

    async with anyio.create_task_group() as tg:
        for b in contenders:
            tg.start_soon(review, b)


def _no_winner(rt: Runtime, unit_id: str, attempt_no: int, branches: list[Branch],
               total: float) -> UnitRunResult:
    """No branch produced a commit: the unit is retried (a transient failure of one of them)
    or failed, with every branch's reason."""
    why = "; ".join(f"branch {b.number}: {b.error or b.agent_status}" for b in branches)
    rt.store.append_event(
        "speculation.winner", mission_id=rt.mission_id, unit_id=unit_id, attempt=attempt_no,
        branch=None, selection=rt.config.speculation.selection,
        losers=[b.number for b in branches], cost_usd=total, reason=why[:2000],
    )
    retryable = [b.failure_reason for b in branches if b.failure_reason in RETRY_REASONS]
    retry = attempt_no < MAX_WORKER_ATTEMPTS and bool(retryable)
    rt.units.move(unit_id, UnitStatus.READY if retry else UnitStatus.FAILED,
                  reason=f"attempt {attempt_no}: no branch produced work ({why})"[:2000])
    backoff = None
    if retry and any(r in BACKOFF_REASONS for r in retryable):
        backoff = rt.config.agent.retry_backoff_seconds * 2 ** (attempt_no - 1)
    worked = any(b.agent_status in ("completed", "failed", "blocked") for b in branches)
    return UnitRunResult(worked, backoff)


def _session_config(config: MissionConfig, model: str | None, single_pass: bool) -> MissionConfig:
    """The mission config with the plugins' model and single-pass choice for these sessions
    (as :func:`engine.dispatch.run_unit` makes it)."""
    if model and model != config.scheduler.model:
        config = config.model_copy(
            update={"scheduler": config.scheduler.model_copy(update={"model": model})})
    if single_pass and config.agent.two_pass:
        config = config.model_copy(
            update={"agent": config.agent.model_copy(update={"two_pass": False})})
    return config

