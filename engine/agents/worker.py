"""Worker sessions: build the prompt of a unit, run one pass (or architect -> editor),
save uncommitted work, and judge the outcome from the result marker or from git facts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.agents.gitfacts import GitError, commit_all, facts_since
from engine.agents.marker import WorkerMarker, parse_marker
from engine.agents.permissions import denial_message, profile_for
from engine.agents.placement import current_host
from engine.agents.recording import run_recorded
from engine.agents.types import (
    COMPLETED,
    ERROR,
    FAILED,
    AgentBackend,
    AgentRequest,
    AgentResult,
    AgentRole,
    FailureReason,
)
from engine.config import MissionConfig
from engine.prompts import PROMPTS_DIR, render
from engine.store import Store


@dataclass
class UnitRunOutcome:
    status: str  # completed | failed | blocked | timeout | budget | error
    summary: str
    marker: WorkerMarker | None
    marker_source: str  # "marker" | "git" (fallback from git facts)
    commits: int
    files_changed: list[str]
    head_commit: str
    cost_usd: float
    failure_reason: FailureReason | None
    attempt_ids: list[int] = field(default_factory=list)
    error: str | None = None


# ---------------------------------------------------------------------- prompts
def _bullets(items: Any, empty: str) -> str:
    if isinstance(items, str):
        items = [items] if items.strip() else []
    items = [str(i) for i in items or [] if str(i).strip()]
    return "\n".join(f"- {i}" for i in items) if items else empty


def specialist_name(unit: dict[str, Any]) -> str:
    return str(unit.get("specialist") or "general").strip().lower().replace("-", "_").replace(" ", "_")


def specialist_text(name: str) -> str | None:
    """The specialist template for ``name`` (``specialist_<name>.md``), if there is one."""
    if not name or name == "general" or not name.isidentifier():
        return None
    if not (PROMPTS_DIR / f"specialist_{name}.md").exists():
        return None
    return render(f"specialist_{name}").strip()


def prompt_values(unit: dict[str, Any], objective: str, feedback: str | None) -> dict[str, str]:
    """Placeholder values shared by the worker, architect, editor and fixup templates."""
    spec = specialist_text(specialist_name(unit))
    return {
        "objective": objective.strip() or "(no objective given)",
        "unit_id": str(unit.get("id", "")),
        "unit_title": str(unit.get("title", "")),
        "unit_description": str(unit.get("description") or "").strip() or "(no description)",
        "files_hint": _bullets(unit.get("files_hint"), "- (none named; find them)"),
        "acceptance_criteria": _bullets(unit.get("acceptance_criteria"),
                                        "- (none given; use the description)"),
        "specialist_section": f"\n## Your specialist role\n\n{spec}\n" if spec else "",
        "feedback_section": (
            f"\n## Feedback on the previous attempt (address all of it)\n\n{feedback.strip()}\n"
            if feedback and feedback.strip() else ""
        ),
    }


def build_prompt(role: AgentRole, values: dict[str, str], **extra: str) -> str:
    """Render the template of ``role`` (worker, architect, editor or fixup)."""
    name = {AgentRole.WORKER: "worker", AgentRole.ARCHITECT: "architect",
            AgentRole.EDITOR: "editor", AgentRole.FIXUP: "fixup"}[role]
    return render(name, **values, **extra)


# ---------------------------------------------------------------------- running
def _request(config: MissionConfig, role: AgentRole, prompt: str, workdir: Path,
             metadata: dict[str, str], *, read_only: bool = False) -> AgentRequest:
    host = current_host()  # a sandbox host sets its own mode (full bypass by default)
    mode = getattr(host, "permission_mode", None) or config.agent.permission_mode
    profile = profile_for(
        AgentRole.ARCHITECT if read_only else role,
        verification_command=config.target.verification.command, repo=workdir,
        mode_override=mode, extra_tools=config.agent.allowed_tools,
    )
    return AgentRequest(
        role=role, prompt=prompt, workdir=workdir, model=config.scheduler.model,
        max_turns=config.agent.max_turns, budget_usd=config.scheduler.budget.max_per_session_usd,
        timeout_s=config.scheduler.session_timeout, allowed_tools=profile.allowed_tools,
        permission_mode=profile.mode, read_only=read_only or profile.mode == "plan",
        metadata=dict(metadata), verify_command=config.target.verification.command,
    )


async def run_unit_agent(
    store: Store,
    backend: AgentBackend,
    *,
    config: MissionConfig,
    mission_id: int,
    unit: dict[str, Any],
    objective: str,
    workdir: Path,
    base_commit: str,
    slot: int | None = None,
    feedback: str | None = None,
    role: AgentRole = AgentRole.WORKER,
    approach: str | None = None,
    failure_output: str | None = None,
    candidate: int | None = None,
) -> UnitRunOutcome:
    """Run a unit's agent (one pass, or architect then editor) and judge what it did."""
    workdir = Path(workdir)
    unit_id = str(unit.get("id", ""))
    values = prompt_values(unit, objective, feedback)
    metadata = {
        "unit_id": unit_id, "unit_title": str(unit.get("title", "")),
        "specialist": specialist_name(unit), "attempt": str(unit.get("attempt_count", "")),
        "approach": approach or "", "epoch": str(unit.get("epoch_id") or ""),
        "candidate": "" if candidate is None else str(candidate),
    }
    attempt_ids: list[int] = []
    cost = 0.0

    async def session(req: AgentRequest) -> AgentResult:
        nonlocal cost
        attempt_id, res = await run_recorded(store, backend, req, mission_id=mission_id,
                                             unit_id=unit_id or None, slot=slot)
        attempt_ids.append(attempt_id)
        cost += res.cost_usd or 0.0
        return res

    result: AgentResult | None = None
    if role == AgentRole.FIXUP:
        prompt = build_prompt(role, values, approach=approach or "Fix it the most direct way.",
                              failure_output=(failure_output or "(no output captured)").strip())
        result = await session(_request(config, role, prompt, workdir, metadata))
    elif config.agent.two_pass and role in (AgentRole.WORKER, AgentRole.EDITOR):
        plan_req = _request(config, AgentRole.ARCHITECT, build_prompt(AgentRole.ARCHITECT, values),
                            workdir, metadata, read_only=True)
        plan = await session(plan_req)
        if plan.status == COMPLETED and plan.text.strip():
            prompt = build_prompt(AgentRole.EDITOR, values, plan=plan.text.strip())
            result = await session(_request(config, AgentRole.EDITOR, prompt, workdir, metadata))
        else:
            result = plan
            if plan.status == COMPLETED:  # completed but said nothing: there is no plan
                result.status, result.error = FAILED, "the architect produced no plan"
                result.failure_reason = FailureReason.BAD_OUTPUT
    else:
        prompt = build_prompt(AgentRole.WORKER, values)
        result = await session(_request(config, role, prompt, workdir, metadata))
    return await _judge(store, mission_id, unit_id, workdir, base_commit, role, result,
                        attempt_ids, cost)


async def _judge(store: Store, mission_id: int, unit_id: str, workdir: Path, base_commit: str,
                 role: AgentRole, result: AgentResult, attempt_ids: list[int],
                 cost: float) -> UnitRunOutcome:
    """Save uncommitted work, collect git facts, then read the marker (or fall back to git)."""
    last_attempt = attempt_ids[-1] if attempt_ids else 0
    try:
        saved = await commit_all(workdir, f"mc: uncommitted work of unit {unit_id} ({role})")
        facts = await facts_since(workdir, base_commit)
    except GitError as exc:
        return UnitRunOutcome(
            status=ERROR, summary="git failed after the agent ran", marker=None,
            marker_source="git", commits=0, files_changed=[], head_commit="", cost_usd=cost,
            failure_reason=FailureReason.CRASH, attempt_ids=attempt_ids, error=str(exc),
        )
    if saved:
        store.append_event(
            "log", mission_id=mission_id, unit_id=unit_id or None, level="info",
            message=f"unit {unit_id}: committed the agent's uncommitted changes as {saved[:12]}",
            attempt_id=last_attempt,
        )
    marker = parse_marker(result.text)
    outcome = UnitRunOutcome(
        status=result.status, summary=result.summary, marker=marker,
        marker_source="marker" if marker else "git", commits=facts.commits,
        files_changed=facts.files_changed, head_commit=facts.head_commit, cost_usd=cost,
        failure_reason=result.failure_reason, attempt_ids=attempt_ids, error=result.error,
    )
    if result.status == COMPLETED:
        if marker is not None:
            outcome.status = marker.status
            outcome.summary = marker.summary or result.summary
            if marker.status != COMPLETED:
                outcome.error = marker.summary or f"the worker reported {marker.status}"
        elif facts.commits > 0:
            outcome.summary = (
                f"no result marker; {facts.commits} commit(s) changing "
                f"{len(facts.files_changed)} file(s)"
            )
        else:
            outcome.status, outcome.error = FAILED, "no changes (and no result marker)"
            outcome.summary = "no changes"
    if result.denials:
        _judge_denials(store, mission_id, unit_id, result, outcome, last_attempt)
    if marker is None:
        store.append_event(
            "log", mission_id=mission_id, unit_id=unit_id or None, level="warning",
            message=(f"unit {unit_id}: no valid result marker; outcome from git facts "
                     f"({facts.commits} commit(s), {len(facts.files_changed)} file(s)): "
                     f"{outcome.status}"),
            attempt_id=last_attempt, marker_source="git",
        )
    return outcome


def _judge_denials(store: Store, mission_id: int, unit_id: str, result: AgentResult,
                   outcome: UnitRunOutcome, attempt_id: int) -> None:
    """Refused tool calls are the reason a unit did not get done, never "no changes"."""
    denied = denial_message(result.denials)
    failed = outcome.status != COMPLETED or outcome.commits == 0
    store.append_event(
        "log", mission_id=mission_id, unit_id=unit_id or None,
        level="error" if failed else "warning",
        message=f"unit {unit_id}: {denied} (permissions: [agent] allowed_tools / permission_mode; "
        "worktrees must be outside .git: scheduler.parallel.pool_dir)",
        attempt_id=attempt_id, denials=result.denials,
    )
    if not failed or outcome.failure_reason not in (None, FailureReason.DENIED,
                                                    FailureReason.BAD_OUTPUT):
        return  # the work got done anyway, or a harder failure (timeout, auth...) says why
    reported = outcome.marker.summary if outcome.marker and outcome.status != COMPLETED else ""
    outcome.status = FAILED
    outcome.failure_reason = FailureReason.DENIED
    if attempt_id:  # the CLI said success; the attempt shows why the unit did not get done
        store.update("attempts", attempt_id, failure_reason=str(FailureReason.DENIED))
    outcome.error = denied + (f" (the agent said: {reported})" if reported else "")
    outcome.summary = denied
