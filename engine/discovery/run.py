"""One discovery run: static signals, the LLM gap analysis, optional research, into the backlog.

The gap analysis is one call through the planner backend (role ``planner``, read-only) with
the ``discovery`` template: the static signals and the open backlog go in, items with
evidence (file:line or tool output) come out; an item without evidence is dropped. Findings
are de-duplicated by the backlog's fingerprint (track + title words), so running discovery
twice adds nothing new.

``research_enabled`` adds a research instruction to the same call (the agent's own web
tools) only when the machine reaches the network (a TCP connect to ``RESEARCH_PROBE``);
without network the run says "research skipped: no network".
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.discovery.signals import Finding, Signals, collect
from engine.planning.ask import PLANNER, Ask, bullets, clip
from engine.planning.parse import PlanParseError, extract_json
from engine.prompts import render
from engine.strategy.backlog import TRACKS, Backlog, BacklogError, BacklogItem
from engine.strategy.chain import backlog_lines_short

RESEARCH_PROBE = ("api.github.com", 443)
SIGNALS_CHARS = 12000


@dataclass
class DiscoveryResult:
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    added: list[int] = field(default_factory=list)  # new backlog item ids
    merged: list[int] = field(default_factory=list)  # existing items that got the evidence


def has_network(probe: tuple[str, int] = RESEARCH_PROBE, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to ``probe`` opens within ``timeout`` seconds."""
    try:
        with socket.create_connection(probe, timeout=timeout):
            return True
    except OSError:
        return False


def parse_gaps(text: str, tracks: list[str]) -> tuple[list[Finding], int]:
    """Findings from the analyst's JSON answer; returns (findings, dropped without evidence)."""
    data = extract_json(text)
    raw = data.get("items") if isinstance(data, dict) else None
    if not isinstance(raw, list):
        raise PlanParseError('expected a JSON object with an "items" list')
    found, dropped = [], 0
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("title"), str):
            dropped += 1
            continue
        evidence = str(item.get("evidence") or "").strip()
        track = item.get("track") if item.get("track") in tracks else None
        if not evidence or track is None:
            dropped += 1
            continue
        found.append(Finding(track, item["title"], evidence, impact=_level(item.get("impact")),
                             effort=_level(item.get("effort")), tool="llm"))
    return found, dropped


def _level(value: Any) -> int:
    try:
        return min(5, max(1, int(value)))
    except (TypeError, ValueError):
        return 3


def _signals_text(signals: Signals) -> str:
    lines = [f"[{f.track}/{f.tool}] {f.title}\n  {f.evidence.splitlines()[0] if f.evidence else ''}"
             for f in signals.findings]
    lines += [f"(note) {n}" for n in signals.notes]
    return clip("\n".join(lines) or "(none)", SIGNALS_CHARS, what="signals")


async def discover(
    repo: Path, backlog: Backlog, *, tracks: list[str], objective: str = "",
    ask: Ask | None = None, research: bool = False, max_items: int = 20,
    failing: list[str] | None = None, network: bool | None = None,
) -> DiscoveryResult:
    """Run discovery on ``repo`` for ``tracks``; add what it finds to ``backlog``.

    ``ask``: the planner backend (``None``: static signals only, said in the notes);
    ``network``: override the research probe (tests).
    """
    tracks = [t for t in tracks if t in TRACKS]
    signals = collect(repo, tracks, failing=failing)
    result = DiscoveryResult(findings=list(signals.findings), notes=list(signals.notes))
    if ask is None:
        result.notes.append("gap analysis: no planner backend given; static signals only")
    else:
        research_section = ""
        if research:
            if network is None:
                network = has_network()
            if network:
                research_section = ("\n## Research\n\nUse your web search and fetch tools to "
                                    "check the project's dependencies and ecosystem for known "
                                    "issues, deprecations and features users expect; cite the "
                                    "URL as evidence.\n")
                result.notes.append("research: on (network reachable)")
            else:
                result.notes.append("research skipped: no network")
        prompt = render("discovery", tracks=", ".join(tracks), objective=objective or "(none)",
                        signals=_signals_text(signals),
                        backlog=bullets(backlog_lines_short(backlog.items()), empty="(empty)",
                                        limit=40),
                        max_items=str(max_items), research_section=research_section)
        try:
            found, dropped = parse_gaps(await ask(PLANNER, prompt), tracks)
            result.findings += found
            if dropped:
                result.notes.append(f"gap analysis: {dropped} item(s) without evidence dropped")
        except PlanParseError as exc:
            result.notes.append(f"gap analysis: unusable answer ({exc})")
    for finding in result.findings[:max_items]:
        try:
            item_id, created = backlog.add(BacklogItem(
                title=finding.title, track=finding.track, evidence=finding.evidence,
                impact=finding.impact, effort=finding.effort, source="discovery"))
        except BacklogError as exc:
            result.notes.append(f"skipped {finding.title!r}: {exc}")
            continue
        (result.added if created else result.merged).append(item_id)
    if len(result.findings) > max_items:
        result.notes.append(f"{len(result.findings) - max_items} finding(s) over max_items dropped")
    backlog.store.append_event("discovery.finished", tracks=tracks, added=result.added,
                               merged=result.merged, notes=result.notes)
    return result


class DiscoveryCallFailed(RuntimeError):
    """The gap-analysis call outside a mission failed (names the reason)."""


def standalone_ask(config: Any, backend: Any, workdir: Path, spent: list[float]) -> Ask:
    """An ``ask`` for ``mc discover`` outside a mission: the planner model, read-only (plan
    mode) in ``workdir``; each call's cost is appended to ``spent`` (USD)."""
    from engine.agents import AgentRequest, AgentRole
    from engine.llm import ROLE_SYSTEM_PROMPTS

    async def ask(role: str, prompt: str) -> str:
        agent_role = AgentRole(role)
        request = AgentRequest(
            role=agent_role, prompt=prompt, workdir=workdir, model=config.models.planner,
            max_turns=min(config.agent.max_turns, 20),
            budget_usd=config.scheduler.budget.max_per_session_usd,
            timeout_s=config.scheduler.session_timeout, permission_mode="plan", read_only=True,
            system_prompt=ROLE_SYSTEM_PROMPTS.get(agent_role), metadata={"purpose": "discovery"})
        result = await backend.run(request)
        spent.append(float(result.cost_usd or 0.0))
        if result.status != "completed":
            raise DiscoveryCallFailed(f"{role} call failed ({result.failure_reason or result.status}): "
                                      f"{result.error or result.summary or 'no output'}")
        return result.text or result.summary

    return ask
