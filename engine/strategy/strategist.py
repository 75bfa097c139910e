"""The strategist: propose the next objective after a mission ends (mission chaining)."""

from __future__ import annotations

from dataclasses import dataclass

from engine.planning.ask import STRATEGIST, Ask, bullets
from engine.planning.parse import PlanParseError, extract_json
from engine.prompts import render

MAX_OBJECTIVE_CHARS = 2000


@dataclass
class StrategyProposal:
    next_objective: str | None
    rationale: str


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
    return StrategyProposal(
        next_objective=objective,
        rationale=(rationale if isinstance(rationale, str) else str(rationale)).strip(),
    )


async def propose_next_objective(
    ask: Ask, *, objective: str, outcome: str, merged: list[str], failed: list[str]
) -> str | None:
    """The next objective, or ``None`` when the strategist proposes nothing usable."""
    prompt = render(
        "strategist",
        objective=objective.strip(),
        outcome=outcome.strip() or "(unknown)",
        merged=bullets(merged, limit=100),
        failed=bullets(failed, limit=100),
    )
    text = await ask(STRATEGIST, prompt)
    try:
        return parse_strategy(text).next_objective
    except PlanParseError:
        return None
