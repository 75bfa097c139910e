"""The strategist: propose the next objective after a mission ends (mission chaining)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.planning.ask import STRATEGIST, Ask, bullets
from engine.planning.parse import PlanParseError, extract_json
from engine.prompts import render

MAX_OBJECTIVE_CHARS = 2000


@dataclass
class StrategyProposal:
    """The strategist's answer: the objective, why, the backlog item it takes (if any) and
    new backlog items it suggests (dicts with title, track, impact, effort, evidence)."""

    next_objective: str | None
    rationale: str
    backlog_id: int | None = None
    new_items: list[dict[str, Any]] = field(default_factory=list)


def parse_strategy(text: str) -> StrategyProposal:
    """From ``{"next_objective": "...", "rationale": "..."}``; an empty objective -> ``None``.

    Raises :class:`~engine.planning.parse.PlanParseError` for an unusable answer.
    """
    data = extract_json(text)
    if not isinstance(data, dict) or "next_objective" not in data:
        raise PlanParseError('expected a JSON object with "next_objective" and "rationale"')
    raw = data["next_objective"]
    if raw is not None and not isinstance(raw, str):
        raise PlanParseError(f'"next_objective" must be a string, got {raw!r}')
    objective = (raw or "").strip()[:MAX_OBJECTIVE_CHARS] or None
    rationale = data.get("rationale") or ""
    backlog_id = data.get("backlog_id")
    new_items = data.get("new_items") or []
    return StrategyProposal(
        next_objective=objective,
        rationale=(rationale if isinstance(rationale, str) else str(rationale)).strip(),
        backlog_id=backlog_id if isinstance(backlog_id, int) and not isinstance(backlog_id, bool)
        else None,
        new_items=[i for i in new_items if isinstance(i, dict) and isinstance(i.get("title"), str)]
        if isinstance(new_items, list) else [],
    )


def backlog_lines(items: list[dict[str, Any]]) -> list[str]:
    """Backlog rows as the strategist sees them: ``#id [track] title (score, impact/effort)``."""
    lines = []
    for r in items:
        score = r.get("effective_score", r.get("score", 0.0))
        evidence = " ".join(str(r.get("evidence") or "").split())[:200]
        lines.append(f"#{r['id']} [{r['track']}] {r['title']} (score {score:.2f}, impact "
                     f"{r['impact']}, effort {r['effort']})" + (f" evidence: {evidence}" if evidence else ""))
    return lines


async def propose(
    ask: Ask, *, objective: str, outcome: str, merged: list[str], failed: list[str],
    backlog: list[dict[str, Any]] | None = None,
) -> StrategyProposal | None:
    """The strategist's proposal (``None`` when its answer is unusable).

    ``backlog``: open backlog rows (best first) the strategist should choose from; a
    ``backlog_id`` it names that is not among them is dropped.
    """
    backlog = backlog or []
    prompt = render(
        "strategist",
        objective=objective.strip(),
        outcome=outcome.strip() or "(unknown)",
        merged=bullets(merged, limit=100),
        failed=bullets(failed, limit=100),
        backlog=bullets(backlog_lines(backlog), empty="(empty)", limit=20),
    )
    text = await ask(STRATEGIST, prompt)
    try:
        proposal = parse_strategy(text)
    except PlanParseError:
        return None
    if proposal.backlog_id not in {r["id"] for r in backlog}:
        proposal.backlog_id = None
    return proposal


async def propose_next_objective(
    ask: Ask, *, objective: str, outcome: str, merged: list[str], failed: list[str]
) -> str | None:
    """The next objective, or ``None`` when the strategist proposes nothing usable."""
    proposal = await propose(ask, objective=objective, outcome=outcome, merged=merged,
                             failed=failed)
    return proposal.next_objective if proposal else None
