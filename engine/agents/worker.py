"""Worker sessions: build the prompt of a unit, run one pass (or architect -> editor),
save uncommitted work, and judge the outcome from the result marker or from git facts.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
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
from engine.prompts import PROMPTS_DIR, render, render_text
from engine.store import Store

SESSION_TOOLS_PREFIX = "mc-session-tools-"
STALL_NOTE = (
    "Note: a previous session on this task was ended by Mission Control ({reason}). "
    "Avoid commands that wait silently for a long time (servers, watchers, prompts); "
    "keep working and report progress."
)


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


LESSONS_HEADING = "What earlier attempts learned"


def lessons_section(notes: list[str] | None) -> str:
    """The "What earlier attempts learned" section (empty without notes)."""
    lines = [n.strip() for n in notes or [] if n and n.strip()]
    if not lines:
        return ""
    return (f"\n## {LESSONS_HEADING}\n\nFrom earlier units and missions on this repository "
            "(follow the conventions, avoid the failures):\n\n"
            + "\n".join(f"- {line}" for line in lines) + "\n")


def approach_section(approach: str | None) -> str:
    """The "Your approach" section of a speculation branch's prompt (empty without a hint)."""
    if not approach or not approach.strip():
        return ""
    return ("\n## Your approach\n\nOther agents work this same unit in parallel with other "
            "approaches; the best result is kept. Take this one:\n\n" + approach.strip() + "\n")


def prompt_values(unit: dict[str, Any], objective: str, feedback: str | None,
                  notes: list[str] | None = None, approach: str | None = None) -> dict[str, str]:
    """Placeholder values shared by the worker, architect, editor and fixup templates
    (``approach``: a speculation branch's hint, shown to workers, architects and editors)."""
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
        "lessons_section": lessons_section(notes),
        "approach_section": approach_section(approach),
    }


def build_prompt(role: AgentRole, values: dict[str, str],
                 templates: Mapping[str, str] | None = None, **extra: str) -> str:
    """Render the template of ``role`` (worker, architect, editor or fixup); ``templates``
    may replace it (name -> template text, e.g. a prompt-evolution variant)."""
    name = {AgentRole.WORKER: "worker", AgentRole.ARCHITECT: "architect",
            AgentRole.EDITOR: "editor", AgentRole.FIXUP: "fixup"}[role]
    if templates and name in templates:
        return render_text(templates[name], name, **values, **extra)
    return render(name, **values, **extra)


# ---------------------------------------------------------------------- running
def _request(config: MissionConfig, role: AgentRole, prompt: str, workdir: Path,
             metadata: dict[str, str], *, read_only: bool = False,
             mcp_config: Path | None = None) -> AgentRequest:
    from engine.agents.session_config import SERVER_NAME

    host = current_host()  # a sandbox host sets its own mode (full bypass by default)
    mode = getattr(host, "permission_mode", None) or config.agent.permission_mode
    serve = mcp_config is not None and not read_only
    profile = profile_for(
        AgentRole.ARCHITECT if read_only else role,
        verification_command=config.target.verification.command, repo=workdir,
        mode_override=mode, extra_tools=config.agent.allowed_tools,
        mcp_servers=(SERVER_NAME,) if serve else (),
    )
    return AgentRequest(
        role=role, prompt=prompt, workdir=workdir, model=config.scheduler.model,
        max_turns=config.agent.max_turns, budget_usd=config.scheduler.budget.max_per_session_usd,
        timeout_s=config.scheduler.session_timeout, stall_s=config.agent.stall_seconds,
        allowed_tools=list(profile.allowed_tools),
        permission_mode=profile.mode, read_only=read_only or profile.mode == "plan",
        metadata=dict(metadata), verify_command=config.target.verification.command,
        mcp_config=mcp_config if serve else None,
    )


def session_tools_on(config: MissionConfig) -> bool:
    """Whether worker sessions are served session tools: ``[agent] session_tools`` with the
    Claude Code backend (the one wired through ``--mcp-config``)."""
    return bool(config.agent.session_tools) and config.agent.backend == "claude"


def session_tools_config(config: MissionConfig, workdir: Path, mission_id: int,
                         unit_id: str, unit: Mapping[str, Any] | None = None) -> Path | None:
    """The ``--mcp-config`` file of this session's tools when :func:`session_tools_on` and the
    session runs as a plain local process, else None. It is written into a private temporary
    folder (never the worktree, which the worker commits; never the repository); remove it
    with :func:`discard_session_tools` when the sessions end. ``unit``: its row, whose
    ``tools`` (the planner's template tools) the server adds; ``recall`` is served while
    ``[episodic_memory]`` is enabled."""
    if not session_tools_on(config):
        return None
    host = current_host()
    if host is not None and getattr(host, "kind", "local") != "local":
        return None  # a sandbox cannot write the store, an SSH host cannot start this Python
    from engine.agents.session_config import RecallSettings, write_mcp_config
    from engine.agents.tool_templates import ToolRequestError, resolve_requests

    memory = config.episodic_memory
    recall = RecallSettings(memory.similarity_threshold, memory.half_life_days,
                            memory.prompt_tokens) if memory.enabled and memory.prompt_tokens else None
    tools: list[dict[str, Any]] = []
    if unit is not None and unit.get("tools"):
        try:  # checked when planned; checked again against the row as stored
            tools = resolve_requests(list(unit["tools"]), list(unit.get("files_hint") or []))
        except ToolRequestError:
            tools = []
    return write_mcp_config(
        Path(tempfile.mkdtemp(prefix=SESSION_TOOLS_PREFIX)), workdir, config.target.verification.command,
        timeout=float(config.target.verification.timeout), store_path=config.db_path(),
        mission_id=mission_id, unit_id=unit_id or None, recall=recall, tools=tools)


def discard_session_tools(path: Path | None) -> None:
    """Remove the temporary folder of a :func:`session_tools_config` file."""
    if path is not None and path.parent.name.startswith(SESSION_TOOLS_PREFIX):
        shutil.rmtree(path.parent, ignore_errors=True)


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
    notes: list[str] | None = None,
    templates: Mapping[str, str] | None = None,
    on_session_end: Callable[[AgentResult], object] | None = None,
) -> UnitRunOutcome:
    """Run a unit's agent (one pass, or architect then editor) and judge what it did.
    ``notes`` fill the prompt's "What earlier attempts learned" section. ``on_session_end``
    is called with the last session's result as soon as the agent is done, before its work
    is judged (git bookkeeping in the worktree: 70-100 ms on a busy 2-core machine, which a
    worker slot need not wait for: engine/dispatch.py)."""
    workdir = Path(workdir)
    unit_id = str(unit.get("id", ""))
    values = prompt_values(unit, objective, feedback, notes,
                           approach if role != AgentRole.FIXUP else None)
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
        if res.failure_reason == FailureReason.STALLED:  # retried once, told why
            store.append_event(
                "agent.stalled", mission_id=mission_id, unit_id=unit_id or None,
                attempt_id=attempt_id, role=str(req.role), stall_s=req.stall_s,
                message=f"unit {unit_id}: {res.error}; retrying the session once",
            )
            retry = replace(req, prompt=f"{req.prompt}\n\n{STALL_NOTE.format(reason=res.error)}",
                            metadata={**req.metadata, "stall_retry": "1"})
            attempt_id, res = await run_recorded(store, backend, retry, mission_id=mission_id,
                                                 unit_id=unit_id or None, slot=slot)
            attempt_ids.append(attempt_id)
            cost += res.cost_usd or 0.0
        return res

    mcp = session_tools_config(config, workdir, mission_id, unit_id, unit)
    result: AgentResult | None = None
    try:
        if role == AgentRole.FIXUP:
            prompt = build_prompt(role, values, approach=approach or "Fix it the most direct way.",
                                  failure_output=(failure_output or "(no output captured)").strip())
            result = await session(_request(config, role, prompt, workdir, metadata, mcp_config=mcp))
        elif config.agent.two_pass and role in (AgentRole.WORKER, AgentRole.EDITOR):
            plan_req = _request(config, AgentRole.ARCHITECT, build_prompt(AgentRole.ARCHITECT, values, templates),
                                workdir, metadata, read_only=True)
            plan = await session(plan_req)
            if plan.status == COMPLETED and plan.text.strip():
                prompt = build_prompt(AgentRole.EDITOR, values, templates, plan=plan.text.strip())
                result = await session(_request(config, AgentRole.EDITOR, prompt, workdir, metadata,
                                                        mcp_config=mcp))
            else:
                result = plan
                if plan.status == COMPLETED:  # completed but said nothing: there is no plan
                    result.status, result.error = FAILED, "the architect produced no plan"
                    result.failure_reason = FailureReason.BAD_OUTPUT
        else:
            prompt = build_prompt(AgentRole.WORKER, values, templates)
            result = await session(_request(config, role, prompt, workdir, metadata, mcp_config=mcp))
    finally:
        discard_session_tools(mcp)
    if on_session_end is not None:
        on_session_end(result)
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
    if marker is not None and marker.context_items():
        # the typed context (engine/learning/context.py stores and scopes it)
        store.append_event(
            "unit.context", mission_id=mission_id, unit_id=unit_id or None,
            attempt_id=last_attempt, files_changed=facts.files_changed,
            items=[{"kind": k, "text": t, "paths": p} for k, t, p in marker.context_items()],
        )
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
