"""Run one unit: worktree, agent session(s), review gate, large-merge gate, submit to the queue."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import anyio

from engine.agents import AgentRole, FailureReason, run_unit_agent
from engine.approvals import approve_or_deny
from engine.gates.review import review_unit
from engine.models import UnitStatus
from engine.runtime import FatalAgentError, Runtime

FATAL_REASONS = {
    FailureReason.AUTH: "the agent CLI is not authenticated (log in or set the API key), stopping",
    FailureReason.USAGE_LIMIT: "the agent's usage limit is reached, stopping until it resets",
}
BACKOFF_REASONS = {FailureReason.OVERLOADED, FailureReason.RATE_LIMIT, FailureReason.API_ERROR}
MAX_WORKER_ATTEMPTS = 3


@dataclass
class UnitRunResult:
    agent_ok: bool  # the session itself worked (a review rejection counts as working)
    retry_after: float | None = None  # overload / rate limit: wait this long before retrying


def unit_branch(unit_id: str) -> str:
    return f"mc/unit/{unit_id}"


async def run_unit(
    rt: Runtime, unit_id: str, slot: int, *, model: str | None = None
) -> UnitRunResult:
    """Take a READY unit to QUEUED (submitted) or to FAILED / READY (retry) with a reason."""
    store = rt.store
    unit = store.get("units", unit_id)
    assert unit is not None
    attempt_no = unit["attempt_count"] + 1
    base = rt.repo.green_head()
    branch = unit_branch(unit_id)
    store.set_status(
        "units", unit_id, UnitStatus.RUNNING, reason=None, attempt_count=attempt_no,
        branch=branch, base_commit=base,
    )
    config = rt.config
    if model and model != config.scheduler.model:
        config = config.model_copy(
            update={"scheduler": config.scheduler.model_copy(update={"model": model})}
        )
    ws = await rt.pool.acquire(branch, base)
    try:
        outcome = await run_unit_agent(
            store, rt.backend, config=config, mission_id=rt.mission_id,
            unit=store.get("units", unit_id) or unit, objective=rt.objective,
            workdir=ws.path, base_commit=base, slot=slot,
            feedback=unit["review_feedback"], role=AgentRole.WORKER,
        )
    finally:
        with anyio.CancelScope(shield=True):
            await rt.pool.release(ws)

    if outcome.failure_reason in FATAL_REASONS:
        store.set_status("units", unit_id, UnitStatus.READY, reason=str(outcome.failure_reason))
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
        store.set_status(
            "units", unit_id, UnitStatus.READY if retry else UnitStatus.FAILED,
            reason=f"attempt {attempt_no}: {reason}",
        )
        backoff = None
        if retry and outcome.failure_reason in BACKOFF_REASONS:
            backoff = rt.config.agent.retry_backoff_seconds * 2 ** (attempt_no - 1)
        return UnitRunResult(outcome.status in ("completed", "failed", "blocked"), backoff)

    head = outcome.head_commit
    store.update("units", unit_id, head_commit=head)

    if rt.config.review.gate_completion:
        store.set_status("units", unit_id, UnitStatus.REVIEWING)
        diff = rt.repo.diff_text(base, head)
        stat = rt.repo.diff_stat(base, head)
        verdict = await review_unit(
            rt.llm.ask, objective=rt.objective, unit=store.get("units", unit_id) or unit,
            diff=diff, diffstat=stat.text, min_score=rt.config.review.min_review_score,
        )
        store.update("units", unit_id, review_score=verdict.score, review_feedback=verdict.feedback)
        store.append_event(
            "review.scored", mission_id=rt.mission_id, unit_id=unit_id, score=verdict.score,
            alignment=verdict.alignment, approach=verdict.approach, tests=verdict.tests,
            passed=verdict.passed, feedback=verdict.feedback, attempt=attempt_no,
        )
        if not verdict.passed:
            rejections = review_rejections(rt, unit_id)  # this one included
            reviews_left = rejections <= rt.config.review.max_review_retries
            store.set_status(
                "units", unit_id, UnitStatus.READY if reviews_left else UnitStatus.FAILED,
                reason=f"review {verdict.score:.1f} < {rt.config.review.min_review_score}: "
                f"{verdict.feedback}",
            )
            return UnitRunResult(True)

    stat = rt.repo.diff_stat(base, head)
    if stat.insertions + stat.deletions > rt.config.hitl.large_merge_lines:
        allowed = await approve_or_deny(
            rt, "large_merge", f"merge {unit['title']} ({stat.insertions}+/{stat.deletions}-)",
            unit_id=unit_id, diffstat=stat.text, diff=rt.repo.diff_text(base, head),
        )
        if not allowed:
            store.set_status("units", unit_id, UnitStatus.FAILED, reason="large merge not approved")
            return UnitRunResult(True)

    submit(rt, unit_id, branch, head)
    return UnitRunResult(True)


def review_rejections(rt: Runtime, unit_id: str) -> int:
    """How often the review gate rejected this unit (crashes and restarts do not count)."""
    rows = rt.store.query(
        "SELECT payload FROM events WHERE kind = 'review.scored' AND unit_id = ?", (unit_id,)
    )
    return sum(1 for r in rows if not json.loads(r["payload"]).get("passed"))


def submit(rt: Runtime, unit_id: str, branch: str, head: str) -> None:
    """Unit to QUEUED and into the merge queue, in one transaction."""
    with rt.store.transaction():
        rt.store.set_status(
            "units", unit_id, UnitStatus.QUEUED, reason=None, head_commit=head, branch=branch
        )
        rt.queue.submit(unit_id, branch, head)
    rt.store.append_event(
        "unit.submitted", mission_id=rt.mission_id, unit_id=unit_id, branch=branch,
        head=head, ts_submitted=time.time(),
    )
