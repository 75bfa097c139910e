"""Objective check: parsing and the unusable-answer default."""

from __future__ import annotations

import anyio
import pytest
from llm_fakes import Canned

from engine.gates.objective import ObjectiveVerdict, check_objective, parse_objective
from engine.planning.parse import PlanParseError


def check(answer: str, **kwargs: object) -> tuple[ObjectiveVerdict, Canned]:
    ask = Canned(answer)
    values = dict(
        objective="Ship the CLI",
        merged=["Add --dry-run"],
        diffstat="cli.py | 10 +",
        verification_output="3 passed in 0.1s",
    )
    values.update(kwargs)
    return anyio.run(lambda: check_objective(ask, **values)), ask  # type: ignore[arg-type]


def test_met_with_confidence() -> None:
    verdict, ask = check('```json\n{"met": true, "confidence": 0.9, "feedback": "all done"}\n```')
    assert verdict.met and verdict.confidence == 0.9 and verdict.feedback == "all done"
    assert verdict.event_payload() == {"met": True, "feedback": "all done", "confidence": 0.9}
    role, prompt = ask.calls[0]
    assert role == "objective_check"
    for text in ["Ship the CLI", "- Add --dry-run", "cli.py | 10 +", "3 passed in 0.1s"]:
        assert text in prompt


def test_not_met() -> None:
    verdict, _ = check('{"met": false, "confidence": 0.7, "feedback": "config option missing"}')
    assert not verdict.met and verdict.feedback == "config option missing"


def test_unusable_answer_is_not_met() -> None:
    verdict, _ = check("Yes, I think so!")
    assert not verdict.met and verdict.confidence == 0.0
    assert verdict.feedback.startswith("objective check answer unusable")


def test_empty_inputs_are_labelled() -> None:
    _, ask = check('{"met": false}', merged=[], diffstat="", verification_output="")
    prompt = ask.calls[0][1]
    assert "(none)" in prompt and "(no changes)" in prompt and "(no output)" in prompt


@pytest.mark.parametrize(
    ("text", "met", "confidence"),
    [
        ('{"met": "yes"}', True, 0.5),
        ('{"met": "False", "confidence": 80}', False, 0.8),
        ('{"met": true, "confidence": "0.25"}', True, 0.25),
        ('{"met": true, "confidence": null}', True, 0.5),
    ],
)
def test_lenient_values(text: str, met: bool, confidence: float) -> None:
    verdict = parse_objective(text)
    assert verdict.met is met and verdict.confidence == confidence


@pytest.mark.parametrize(
    "text",
    [
        '{"met": "maybe"}',
        '{"met": 1}',
        '{"confidence": 1}',
        '{"met": true, "confidence": 150}',
        '{"met": true, "confidence": "high"}',
    ],
)
def test_invalid_values(text: str) -> None:
    with pytest.raises(PlanParseError):
        parse_objective(text)
