"""Strategist: next objective proposal and parsing."""

from __future__ import annotations

import anyio
import pytest
from llm_fakes import Canned

from engine.planning.parse import PlanParseError
from engine.strategy.strategist import parse_strategy, propose_next_objective


def propose(answer: str) -> tuple[str | None, Canned]:
    ask = Canned(answer)
    result = anyio.run(
        lambda: propose_next_objective(
            ask,
            objective="Add rate limiting",
            outcome="completed: objective met",
            merged=["Add limiter", "Wire limiter"],
            failed=["Add retry: timed out"],
        )
    )
    return result, ask


def test_proposal() -> None:
    result, ask = propose(
        '```json\n{"next_objective": " Add retries with backoff ", "rationale": "503s"}\n```'
    )
    assert result == "Add retries with backoff"
    role, prompt = ask.calls[0]
    assert role == "strategist"
    for text in [
        "Add rate limiting",
        "completed: objective met",
        "- Wire limiter",
        "- Add retry: timed out",
    ]:
        assert text in prompt


@pytest.mark.parametrize(
    "answer",
    [
        '{"next_objective": "", "rationale": "done"}',
        '{"next_objective": null}',
        '{"next_objective": "   "}',
        "Nothing more to do.",
        '{"objective": "x"}',
    ],
)
def test_nothing_usable_is_none(answer: str) -> None:
    assert propose(answer)[0] is None


def test_parse_strategy() -> None:
    p = parse_strategy('{"next_objective": "Line one.\\nLine two.", "rationale": "why"}')
    assert p.next_objective == "Line one.\nLine two." and p.rationale == "why"
    with pytest.raises(PlanParseError):
        parse_strategy('{"next_objective": 5}')
