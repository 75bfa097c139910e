"""The objective check: after an epoch, has the mission's objective been met?"""

from __future__ import annotations

from dataclasses import dataclass

from engine.planning.ask import OBJECTIVE_CHECK, Ask, bullets, clip
from engine.planning.parse import PlanParseError, as_number, extract_json
from engine.prompts import render

MAX_OUTPUT_CHARS = 20_000
MAX_DIFFSTAT_CHARS = 20_000
DEFAULT_CONFIDENCE = 0.5


@dataclass
class ObjectiveVerdict:
    met: bool
    feedback: str
    confidence: float

    def event_payload(self) -> dict[str, object]:
        """The payload of an ``objective.checked`` event."""
        return {"met": self.met, "feedback": self.feedback, "confidence": self.confidence}


def parse_objective(text: str) -> ObjectiveVerdict:
    """A verdict from ``{"met": bool, "confidence": 0-1, "feedback": ".."}``; raises ValueError.

    ``met`` may be a JSON boolean or "true"/"false"/"yes"/"no"; ``confidence`` may be 0..1 or a
    percentage (0..100), defaulting to 0.5.
    """
    data = extract_json(text)
    if not isinstance(data, dict) or "met" not in data:
        raise PlanParseError('expected a JSON object with "met", "confidence" and "feedback"')
    met = data["met"]
    if isinstance(met, str) and met.strip().lower() in ("true", "yes", "false", "no"):
        met = met.strip().lower() in ("true", "yes")
    if not isinstance(met, bool):
        raise PlanParseError(f'"met" must be true or false, got {data["met"]!r}')
    confidence = DEFAULT_CONFIDENCE
    if data.get("confidence") is not None:
        number = as_number(data["confidence"])
        if number is None or not 0.0 <= number <= 100.0:
            raise PlanParseError(f'"confidence" must be from 0 to 1, got {data["confidence"]!r}')
        confidence = number / 100.0 if number > 1.0 else number
    feedback = data.get("feedback") or ""
    return ObjectiveVerdict(
        met=met,
        feedback=(feedback if isinstance(feedback, str) else str(feedback)).strip(),
        confidence=round(confidence, 3),
    )


async def check_objective(
    ask: Ask, *, objective: str, merged: list[str], diffstat: str, verification_output: str
) -> ObjectiveVerdict:
    """Ask whether ``objective`` is met; an unusable answer counts as not met (with the reason)."""
    prompt = render(
        "objective_check",
        objective=objective.strip(),
        merged=bullets(merged, limit=100),
        diffstat=clip(diffstat.strip(), MAX_DIFFSTAT_CHARS, what="diffstat") or "(no changes)",
        verification=clip(verification_output.strip(), MAX_OUTPUT_CHARS, what="output")
        or "(no output)",
    )
    text = await ask(OBJECTIVE_CHECK, prompt)
    try:
        return parse_objective(text)
    except PlanParseError as exc:
        return ObjectiveVerdict(
            met=False, feedback=f"objective check answer unusable: {exc}", confidence=0.0
        )
