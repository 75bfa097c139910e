"""The planning and gate prompt templates render, and their JSON examples parse with our parsers."""

from __future__ import annotations

import re

import pytest

from engine.gates.objective import parse_objective
from engine.gates.review import parse_review
from engine.planning.ambition import parse_ambition
from engine.planning.parse import extract_json
from engine.planning.schema import PlannerAnswer
from engine.prompts import PromptError, load, render
from engine.strategy.strategist import parse_strategy

OURS = ("planner", "ambition", "reviewer", "objective_check", "strategist")


def placeholders(name: str) -> set[str]:
    return {
        m.group("named") or m.group("braced")
        for m in load(name).pattern.finditer(load(name).template)
        if m.group("named") or m.group("braced")
    }


@pytest.mark.parametrize("name", OURS)
def test_renders_with_its_placeholders_and_rejects_missing_ones(name: str) -> None:
    names = placeholders(name)
    assert names, name
    text = render(name, **{n: f"<{n}>" for n in names})
    for n in names:
        assert f"<{n}>" in text
    assert not re.search(r"\$[A-Za-z_]", text)
    with pytest.raises(PromptError):
        render(name)


def example(name: str) -> str:
    text = render(name, **{n: "x" for n in placeholders(name)})
    return text[text.rindex("```json") :]


def test_planner_example_is_a_valid_answer() -> None:
    answer = PlannerAnswer.model_validate(extract_json(example("planner")))
    assert len(answer.units) == 2
    assert answer.units[1].dependencies == [answer.units[0].title]


def test_gate_examples_parse() -> None:
    assert parse_ambition(example("ambition"))[0] == 6
    assert parse_review(example("reviewer"), min_score=6).score == pytest.approx(20 / 3, abs=0.01)
    assert parse_objective(example("objective_check")).met is False
    assert parse_strategy(example("strategist")).next_objective
