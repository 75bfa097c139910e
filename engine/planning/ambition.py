"""The ambition gate: is a plan worth running, or too timid for the objective?

Two opinions are combined: a model's score (prompt ``ambition.md``) and a cheap heuristic over
the plan's shape. Weighting (see :func:`combine`): 70 % model, 30 % heuristic; the heuristic
alone when the model's answer is missing or unusable.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from engine.planning.ask import AMBITION, Ask
from engine.planning.overlap import normalize_hint
from engine.planning.parse import PlanParseError, as_number, extract_json
from engine.planning.schema import PlanTree
from engine.prompts import render

LLM_WEIGHT = 0.7
HEURISTIC_WEIGHT = 1.0 - LLM_WEIGHT

_TRIVIAL = re.compile(
    r"\b(fix(es|ed)?\s+(a\s+)?typos?|typos?|rename[sd]?|reformat|formatting|whitespace|"
    r"bump\s+(the\s+)?version|update\s+(the\s+)?(readme|changelog|comments?|docstrings?)|"
    r"add\s+(a\s+)?(comment|docstring)s?|fix\s+(lint|linting|imports?)|sort\s+imports|"
    r"remove\s+unused\s+imports?)\b",
    re.I,
)
_VAGUE = re.compile(
    r"^(it\s+)?(works?|done|complete[sd]?|finished|tests?\s+pass(es)?|looks?\s+good|ok|"
    r"no\s+errors?|code\s+is\s+clean(er)?|improved?)\.?$",
    re.I,
)


# (at most this many distinct hinted paths, points)
_SPREAD_POINTS = ((0, 0.0), (1, 0.5), (3, 1.0), (7, 1.5), (math.inf, 2.0))


@dataclass
class AmbitionVerdict:
    score: float
    llm_score: float | None
    heuristic_score: float
    accepted: bool
    feedback: str

    def event_payload(self) -> dict[str, Any]:
        """The payload of a ``plan.scored`` event."""
        return {
            "score": self.score,
            "llm_score": self.llm_score,
            "heuristic_score": self.heuristic_score,
            "accepted": self.accepted,
            "feedback": self.feedback,
        }


def is_trivial_title(title: str) -> bool:
    """Whether a title names cosmetic work (typo, rename, formatting, version bump, ...)."""
    return bool(_TRIVIAL.search(title))


def is_specific_criterion(text: str) -> bool:
    """A checkable criterion: at least four words and not a vague "it works" / "tests pass"."""
    text = text.strip()
    return len(text.split()) >= 4 and not _VAGUE.match(text)


def heuristic_score(tree: PlanTree) -> tuple[float, list[str]]:
    """A 1..10 score from the plan's shape, and the weaknesses that lowered it.

    Points (max 10): leaves 0..3 (1 leaf 0, 2: 1, 3-4: 2, 5+: 3); file spread 0..2.5 (distinct
    hinted paths, bonus for more than one top-level directory); acceptance criteria 0..2.5 (the
    share of leaves with at least one specific criterion); substance 0..2 (the share of leaves
    whose title is not trivial, e.g. "fix typo", "rename"). The result is clamped to 1..10.
    """
    leaves = tree.leaves()
    notes: list[str] = []
    n = len(leaves)
    if n == 0:
        return 1.0, ["the plan has no units"]

    leaf_points = 0.0 if n == 1 else 1.0 if n == 2 else 2.0 if n <= 4 else 3.0
    if n <= 2:
        notes.append(f"only {n} unit{'s' if n != 1 else ''} of work: the plan may be too small")

    paths = {p for u in leaves for p in (normalize_hint(h) for h in u.node.files_hint) if p}
    tops = {p.split("/", 1)[0] for p in paths}
    spread = len(paths)
    spread_points = next(points for limit, points in _SPREAD_POINTS if spread <= limit)
    if len(tops) >= 2:
        spread_points += 0.5
    if spread == 0:
        notes.append("no unit names the files it will touch")
    elif spread <= 1:
        notes.append("all work is confined to a single file")

    with_criteria = sum(1 for u in leaves if u.node.acceptance_criteria)
    specific = sum(
        1 for u in leaves if any(is_specific_criterion(c) for c in u.node.acceptance_criteria)
    )
    criteria_points = 2.5 * specific / n
    if with_criteria < n:
        notes.append(f"{n - with_criteria} of {n} units have no acceptance criteria")
    elif specific < n:
        notes.append(f"{n - specific} of {n} units have only vague acceptance criteria")

    trivial = sum(1 for u in leaves if is_trivial_title(u.node.title))
    substance_points = 2.0 * (n - trivial) / n
    if trivial == n:
        notes.append("every unit is trivial (typos, renames, formatting)")
    elif trivial:
        notes.append(f"{trivial} of {n} units are trivial (typos, renames, formatting)")

    total = leaf_points + spread_points + criteria_points + substance_points
    return round(min(10.0, max(1.0, total)), 2), notes


def combine(llm_score: float | None, heuristic: float) -> float:
    """``0.7 * llm + 0.3 * heuristic`` (the heuristic alone without a model score), in 1..10."""
    if llm_score is None:
        value = heuristic
    else:
        value = LLM_WEIGHT * llm_score + HEURISTIC_WEIGHT * heuristic
    return round(min(10.0, max(1.0, value)), 2)


def parse_ambition(text: str) -> tuple[float, str]:
    """``(score, feedback)`` from ``{"score": 1-10, "feedback": "..."}``; raises ValueError."""
    data: Any = extract_json(text)
    if not isinstance(data, dict) or "score" not in data:
        raise PlanParseError('expected a JSON object with "score" and "feedback"')
    score = as_number(data["score"])
    if score is None or not 1.0 <= score <= 10.0:
        raise PlanParseError(f"score must be a number from 1 to 10, got {data['score']!r}")
    feedback = data.get("feedback") or ""
    if not isinstance(feedback, str):
        feedback = str(feedback)
    return score, feedback.strip()


async def ambition_gate(
    ask: Ask, tree: PlanTree, objective: str, *, min_score: float
) -> AmbitionVerdict:
    """Score ``tree`` against ``objective``; accepted when the combined score >= ``min_score``.

    An unusable model answer, or an error from ``ask`` itself (this gate is advisory), leaves
    the heuristic alone in charge; the reason is part of the feedback.
    """
    heuristic, notes = heuristic_score(tree)
    llm_score: float | None = None
    llm_feedback = ""
    prompt = render(
        "ambition",
        objective=objective.strip(),
        plan=tree.outline(),
        rationale=tree.rationale.strip() or "(none given)",
        leaves=len(tree.leaves()),
    )
    try:
        text = await ask(AMBITION, prompt)
        llm_score, llm_feedback = parse_ambition(text)
    except PlanParseError as exc:
        notes.append(f"the ambition reviewer's answer was unusable ({exc}); heuristic only")
    except Exception as exc:  # advisory gate: fall back to the heuristic
        notes.append(f"the ambition reviewer failed ({type(exc).__name__}: {exc}); heuristic only")
    score = combine(llm_score, heuristic)
    parts = [llm_feedback] if llm_feedback else []
    if notes:
        parts.append("Plan shape: " + "; ".join(notes) + ".")
    return AmbitionVerdict(
        score=score,
        llm_score=llm_score,
        heuristic_score=heuristic,
        accepted=score >= min_score,
        feedback="\n".join(parts),
    )
