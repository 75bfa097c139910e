"""The review gate: a reviewer model scores a unit's diff before it may enter the merge queue."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from engine.planning.ask import REVIEWER, Ask, bullets, clip
from engine.planning.parse import PlanParseError, as_number, extract_json
from engine.prompts import render

MAX_DIFF_CHARS = 60_000
DIMENSIONS = ("alignment", "approach", "tests")


class ReviewParseError(ValueError):
    """The reviewer's answer has no usable verdict."""


@dataclass
class ReviewVerdict:
    score: float
    alignment: float
    approach: float
    tests: float
    passed: bool
    feedback: str

    def event_payload(self) -> dict[str, Any]:
        """The payload of a ``review.scored`` event."""
        return {
            "score": self.score,
            "alignment": self.alignment,
            "approach": self.approach,
            "tests": self.tests,
            "passed": self.passed,
            "feedback": self.feedback,
        }


def _as_list(value: Any) -> list[str]:
    """A list column of a ``units`` row, decoded or not (JSON text), as strings."""
    if value is None:
        return []
    if isinstance(value, str):
        if value.strip().startswith("["):
            try:
                decoded = json.loads(value)
            except json.JSONDecodeError:
                decoded = None
            if isinstance(decoded, list):
                return [str(v) for v in decoded]
        return [value] if value.strip() else []
    return [str(v) for v in value]


def review_prompt(*, objective: str, unit: dict[str, Any], diff: str, diffstat: str) -> str:
    """The reviewer prompt for one unit (``unit`` is a ``units`` row or a dict like it)."""
    return render(
        "reviewer",
        objective=objective.strip(),
        title=unit.get("title", ""),
        description=unit.get("description") or "(none)",
        criteria=bullets(_as_list(unit.get("acceptance_criteria"))),
        files_hint=", ".join(_as_list(unit.get("files_hint"))) or "(none given)",
        specialist=unit.get("specialist") or "general",
        diffstat=diffstat.strip() or "(empty)",
        diff=clip(diff, MAX_DIFF_CHARS, what="diff") if diff.strip() else "(empty diff)",
    )


def parse_review(text: str, *, min_score: float) -> ReviewVerdict:
    """A verdict from ``{"alignment": 1-10, "approach": .., "tests": .., "feedback": ".."}``.

    ``score`` is the model's ``"score"`` when it gives a valid one, else the mean of the three
    dimensions; ``passed`` is ``score >= min_score``. Raises :class:`ReviewParseError`.
    """
    try:
        data = extract_json(text)
    except PlanParseError as exc:
        raise ReviewParseError(str(exc)) from None
    if not isinstance(data, dict):
        raise ReviewParseError("expected a JSON object with alignment, approach, tests, feedback")
    values: dict[str, float] = {}
    for name in DIMENSIONS:
        if name not in data:
            raise ReviewParseError(f'missing "{name}" (a number from 1 to 10)')
        number = as_number(data[name])
        if number is None or not 0.0 <= number <= 10.0:
            raise ReviewParseError(f'"{name}" must be a number from 1 to 10, got {data[name]!r}')
        values[name] = number
    score = sum(values.values()) / len(values)
    if data.get("score") is not None:
        given = as_number(data["score"])
        if given is None or not 0.0 <= given <= 10.0:
            raise ReviewParseError(f'"score" must be a number from 1 to 10, got {data["score"]!r}')
        score = given
    feedback = data.get("feedback") or ""
    score = round(score, 2)
    return ReviewVerdict(
        score=score,
        alignment=values["alignment"],
        approach=values["approach"],
        tests=values["tests"],
        passed=score >= min_score,
        feedback=(feedback if isinstance(feedback, str) else str(feedback)).strip(),
    )


async def review_unit(
    ask: Ask,
    *,
    objective: str,
    unit: dict[str, Any],
    diff: str,
    diffstat: str,
    min_score: float,
) -> ReviewVerdict:
    """Ask the reviewer; one retry on an unusable answer, then a failing verdict with the reason."""
    prompt = review_prompt(objective=objective, unit=unit, diff=diff, diffstat=diffstat)
    text = await ask(REVIEWER, prompt)
    try:
        return parse_review(text, min_score=min_score)
    except ReviewParseError as first:
        retry = (
            prompt
            + f"\n\n## Your previous answer could not be used\n\nProblem: {first}\n\n"
            + "Reply again with only the JSON object described above."
        )
        text = await ask(REVIEWER, retry)
        try:
            return parse_review(text, min_score=min_score)
        except ReviewParseError as second:
            return ReviewVerdict(
                score=0.0,
                alignment=0.0,
                approach=0.0,
                tests=0.0,
                passed=False,
                feedback=f"review failed: the reviewer's answer was unusable twice ({second})",
            )
