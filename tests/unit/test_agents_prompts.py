"""The worker-side prompt templates: files, placeholders, specialists, and a parseable marker."""

from __future__ import annotations

import re

import pytest

from engine.agents.marker import parse_marker
from engine.agents.types import AgentRole
from engine.agents.worker import build_prompt, prompt_values, specialist_text
from engine.prompts import PROMPTS_DIR, PromptError, render

ISSUE_TEMPLATES = ("worker", "architect", "editor", "planner", "reviewer", "fixup",
                   "objective_check", "strategist")
SPECIALISTS = ("test_writer", "refactorer", "security_auditor", "docs_writer", "bug_fixer")
UNIT = {"id": "u7", "title": "Add subtract", "description": "subtract(a, b) in calc.py",
        "files_hint": ["calc.py"], "acceptance_criteria": ["subtract(3, 1) == 2"]}


def test_every_template_is_a_file() -> None:
    for name in (*ISSUE_TEMPLATES, *(f"specialist_{s}" for s in SPECIALISTS)):
        path = PROMPTS_DIR / f"{name}.md"
        assert path.is_file() and path.read_text().strip(), name


def rendered(role: AgentRole, unit: dict, feedback: str | None = None) -> str:
    values = prompt_values(unit, "A calculator.", feedback)
    extra = {AgentRole.EDITOR: {"plan": "PLAN-1"},
             AgentRole.FIXUP: {"approach": "APPROACH-1", "failure_output": "FAIL-1"}}
    return build_prompt(role, values, **extra.get(role, {}))


@pytest.mark.parametrize("role", [AgentRole.WORKER, AgentRole.ARCHITECT, AgentRole.EDITOR,
                                  AgentRole.FIXUP])
def test_worker_side_templates_render_everything(role: AgentRole) -> None:
    text = rendered(role, {**UNIT, "specialist": "security_auditor"}, feedback="FEEDBACK-1")
    assert not re.search(r"\$[A-Za-z_{]", text), text  # no placeholder left
    for needle in ("A calculator.", "Add subtract (`u7`)", "subtract(3, 1) == 2",
                   "security auditor", "FEEDBACK-1"):
        assert needle.lower() in text.lower(), (role, needle)
    extra = {AgentRole.EDITOR: "PLAN-1", AgentRole.FIXUP: "APPROACH-1"}.get(role)
    assert extra is None or extra in text
    if role != AgentRole.ARCHITECT:  # the architect answers with a plan, not a marker
        assert parse_marker(text) is not None and parse_marker(text).status == "completed"
    with pytest.raises(PromptError):
        render(role.value if role != AgentRole.OBJECTIVE else "objective_check")


@pytest.mark.parametrize("name", SPECIALISTS)
def test_specialists_are_included_by_the_units_specialist(name: str) -> None:
    spec = specialist_text(name)
    assert spec
    assert spec in rendered(AgentRole.WORKER, {**UNIT, "specialist": name.replace("_", " ")})
    assert spec not in rendered(AgentRole.WORKER, UNIT)


def test_unknown_or_unsafe_specialists_add_nothing() -> None:
    for name in ("general", "", "../worker", "nonexistent_role"):
        assert specialist_text(name) is None
    assert "specialist role" not in rendered(AgentRole.WORKER, {**UNIT, "specialist": "wizard"})


@pytest.mark.parametrize("role", [AgentRole.WORKER, AgentRole.ARCHITECT, AgentRole.EDITOR,
                                  AgentRole.FIXUP])
def test_lessons_enter_every_worker_side_prompt(role: AgentRole) -> None:
    lesson = "[failed] Add sum (files: calc.py) failed because: calc.py lacks the SPDX header"
    values = prompt_values(UNIT, "Make a calculator", None, [lesson])
    extra = {AgentRole.EDITOR: {"plan": "p"},
             AgentRole.FIXUP: {"approach": "a", "failure_output": "o"}}.get(role, {})
    text = build_prompt(role, values, **extra)
    assert "## What earlier attempts learned" in text and f"- {lesson}" in text
    bare = build_prompt(role, prompt_values(UNIT, "Make a calculator", None, []), **extra)
    assert "What earlier attempts learned" not in bare and "$lessons_section" not in bare


@pytest.mark.parametrize("role", [AgentRole.WORKER, AgentRole.ARCHITECT, AgentRole.EDITOR])
def test_a_speculation_branch_is_told_its_approach(role: AgentRole) -> None:
    hint = "Start from the tests: write them first."
    extra = {AgentRole.EDITOR: {"plan": "p"}}.get(role, {})
    text = build_prompt(role, prompt_values(UNIT, "A calculator.", None, approach=hint), **extra)
    assert "## Your approach" in text and hint in text
    bare = build_prompt(role, prompt_values(UNIT, "A calculator.", None), **extra)
    assert "Your approach" not in bare and "$approach_section" not in bare
