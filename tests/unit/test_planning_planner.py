"""RecursivePlanner: decomposition, limits, retries, dependency resolution, cycles, overlap."""

from __future__ import annotations

import json
import re
from typing import Any

import anyio
import pytest

from engine.planning.planner import (
    PlanningContext,
    PlanningFailed,
    RecursivePlanner,
    render_context,
)
from engine.planning.schema import PlanTree

KEY_LINE = re.compile(r"^- key: (\S+) ", re.M)


class RoutedAsk:
    """A fake ``ask``: answers per plan node (``None`` = the objective), consumed in order."""

    def __init__(self, answers: dict[str | None, list[str]]) -> None:
        self.answers = {k: list(v) for k, v in answers.items()}
        self.calls: list[tuple[str, str | None, str]] = []

    async def __call__(self, role: str, prompt: str) -> str:
        match = KEY_LINE.search(prompt)
        key = match.group(1) if match else None
        self.calls.append((role, key, prompt))
        await anyio.sleep(0)
        queue = self.answers.get(key)
        if not queue:
            raise AssertionError(f"unexpected planner call for {key!r}")
        return queue.pop(0)

    def prompts_for(self, key: str | None) -> list[str]:
        return [p for _, k, p in self.calls if k == key]


def unit(title: str, **fields: Any) -> dict[str, Any]:
    return {"title": title, **fields}


def answer(*units: dict[str, Any], rationale: str = "") -> str:
    return (
        "Here is the plan.\n```json\n"
        + json.dumps({"rationale": rationale, "units": list(units)})
        + "\n```"
    )


def ctx(**overrides: Any) -> PlanningContext:
    values: dict[str, Any] = dict(
        objective="Add rate limiting to the API client",
        epoch=2,
        merged=["Add config loader"],
        failed=[("Add retry", "tests timed out")],
        review_feedback=["parser.py lacks tests"],
        remaining_budget_usd=12.5,
        ambition_feedback="Too timid: only renames.",
        memory=["Workers forget to run ruff"],
        repo_files=["src/client.py", "tests/test_client.py"],
    )
    values.update(overrides)
    return PlanningContext(**values)


def plan(ask: RoutedAsk, **kwargs: Any) -> PlanTree:
    kwargs.setdefault("max_depth", 2)
    kwargs.setdefault("max_children", 4)
    planner = RecursivePlanner(ask, **kwargs)
    return anyio.run(planner.plan, ctx())


def test_flat_plan_resolves_sibling_dependencies_to_keys() -> None:
    ask = RoutedAsk(
        {
            None: [
                answer(
                    unit("Write limiter", files_hint=["src/limit.py"]),
                    unit(
                        "Wire limiter", files_hint=["src/client.py"], dependencies=["write LIMITER"]
                    ),
                    unit(
                        "Document it",
                        files_hint=["docs/limit.md"],
                        dependencies=["Write limiter", "Wire limiter"],
                    ),
                    rationale="small steps",
                )
            ]
        }
    )
    tree = plan(ask)
    assert tree.rationale == "small steps"
    assert [(u.key, u.parent_key, u.depth, u.is_leaf) for u in tree.units] == [
        ("1", None, 1, True),
        ("2", None, 1, True),
        ("3", None, 1, True),
    ]
    assert tree.get("2").dependencies == ["1"]
    assert tree.get("3").dependencies == ["1", "2"]
    assert [c[0] for c in ask.calls] == ["planner"]


def test_prompt_shows_mission_state_and_limits() -> None:
    ask = RoutedAsk({None: [answer(unit("Only unit"))]})
    plan(ask, max_children=3)
    prompt = ask.prompts_for(None)[0]
    for expected in [
        "Add rate limiting to the API client",
        "Epoch: 2",
        "- Add config loader",
        "- Add retry: tests timed out",
        "- parser.py lacks tests",
        "$12.50",
        "Too timid: only renames.",
        "Workers forget to run ruff",
        "src/client.py",
        "between 1 and 3 top-level",
        "At most 3 units",
        "test_writer",
    ]:
        assert expected in prompt, expected
    assert "$" not in prompt.replace("$12.50", "")


def test_render_context_defaults() -> None:
    text = render_context(
        ctx(
            merged=[],
            failed=[],
            review_feedback=[],
            remaining_budget_usd=None,
            ambition_feedback=None,
            memory=[],
            repo_files=[f"f{i}" for i in range(250)],
        )
    )
    assert "Remaining budget: not limited" in text
    assert "Already merged into the green branch (do not redo these):\n(none)" in text
    assert "Repository files (250)" in text and "... and 50 more" in text and "f199" in text
    assert "f200" not in text


def test_recursive_decomposition_and_inherited_dependencies() -> None:
    ask = RoutedAsk(
        {
            None: [
                answer(
                    unit("Backend", leaf=False, files_hint=["src/api"]),
                    unit("Frontend", leaf=False, dependencies=["Backend"]),
                    unit("Docs", files_hint=["docs/"]),
                )
            ],
            "1": [
                answer(
                    unit("Model", files_hint=["src/api/model.py"]),
                    unit("Routes", files_hint=["src/api/routes.py"], dependencies=["Model"]),
                )
            ],
            "2": [
                answer(
                    unit("Page", files_hint=["web/page.tsx"]),
                    unit("Style", files_hint=["web/page.css"]),
                )
            ],
        }
    )
    tree = plan(ask, max_depth=2)
    assert [u.key for u in tree.units] == ["1", "1.1", "1.2", "2", "2.1", "2.2", "3"]
    assert [u.key for u in tree.leaves()] == ["1.1", "1.2", "2.1", "2.2", "3"]
    assert tree.get("1").is_leaf is False and tree.get("1.1").parent_key == "1"
    assert tree.get("1.2").depth == 2
    # own sibling dependency
    assert tree.get("1.2").dependencies == ["1.1"]
    # "Frontend" depends on "Backend": every frontend leaf waits for every backend leaf
    assert tree.get("2.1").dependencies == ["1.1", "1.2"]
    assert tree.get("2.2").dependencies == ["1.1", "1.2"]
    # the inner node keeps the sibling key the planner named
    assert tree.get("2").dependencies == ["1"]
    assert tree.get("3").dependencies == []
    sub = ask.prompts_for("1")[0]
    assert "- path: objective > Backend" in sub
    assert "- Frontend" in sub and "- Docs" in sub  # the other parts at its level
    assert "at the maximum depth (2)" in sub


def test_depth_limit_turns_nodes_into_leaves() -> None:
    ask = RoutedAsk(
        {
            None: [answer(unit("Big", leaf=False))],
            "1": [answer(unit("Bigger", leaf=False), unit("Small"))],
        }
    )
    tree = plan(ask, max_depth=2)
    assert tree.get("1.1").is_leaf is True  # asked to decompose, but depth 2 is the limit
    assert tree.get("1.1").node.leaf is False
    assert len(ask.calls) == 2
    root_prompt = ask.prompts_for(None)[0]
    assert 'Set "leaf": false only on a child too large' in root_prompt


def test_max_depth_one_never_recurses() -> None:
    ask = RoutedAsk({None: [answer(unit("Big", leaf=False))]})
    tree = plan(ask, max_depth=1)
    assert [(u.key, u.is_leaf) for u in tree.units] == [("1", True)]
    assert len(ask.calls) == 1


def test_three_levels() -> None:
    ask = RoutedAsk(
        {
            None: [answer(unit("A", leaf=False))],
            "1": [answer(unit("B", leaf=False))],
            "1.1": [answer(unit("C"), unit("D", dependencies=["C"]))],
        }
    )
    tree = plan(ask, max_depth=3)
    assert [u.key for u in tree.units] == ["1", "1.1", "1.1.1", "1.1.2"]
    assert tree.get("1.1.2").depth == 3 and tree.get("1.1.2").dependencies == ["1.1.1"]
    assert "- path: objective > A > B" in ask.prompts_for("1.1")[0]


def test_too_many_children_sent_back_then_accepted() -> None:
    ask = RoutedAsk(
        {
            None: [
                answer(*(unit(f"Unit {i}") for i in range(5))),
                answer(unit("Unit A"), unit("Unit B")),
            ]
        }
    )
    tree = plan(ask, max_children=3)
    assert [u.title for u in tree.units] == ["Unit A", "Unit B"]
    retry = ask.prompts_for(None)[1]
    assert "Your previous answer was rejected" in retry
    assert "you returned 5 units; at most 3 are allowed" in retry
    assert '"title": "Unit 4"' in retry  # the rejected answer is shown back


def test_malformed_answers_retried_then_planning_failed() -> None:
    ask = RoutedAsk(
        {None: ["I will think about it.", '```json\n{"units": [\n```', '{"units": "nope"}']}
    )
    planner = RecursivePlanner(ask, max_depth=2, max_children=4, max_parse_retries=2)
    with pytest.raises(
        PlanningFailed,
        match="rejected 3 times; last problem: the JSON does not match the schema: units",
    ):
        anyio.run(planner.plan, ctx())
    assert planner.calls == 3
    prompts = ask.prompts_for(None)
    assert "no JSON object found" in prompts[1]
    assert "```json block is not valid JSON" in prompts[2]


def test_zero_retries_fails_at_once() -> None:
    ask = RoutedAsk({None: ["nothing"]})
    with pytest.raises(PlanningFailed, match="rejected 1 times"):
        plan(ask, max_parse_retries=0)


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        (
            answer(unit("A"), unit("B", dependencies=["Nope"])),
            "unit 'B' depends on 'Nope', which is not the title of one of its siblings (siblings: 'A')",
        ),
        (answer(unit("A", dependencies=["A"])), "unit 'A' depends on itself"),
        (answer(unit("A"), unit("a ")), "titles must be unique"),
        (answer(unit("A", specialist="wizard")), "unknown specialist 'wizard'"),
        (answer(unit("A", priority=9)), "units.0.priority"),
        (answer(unit("")), "title must not be empty"),
        ("```json\n[1, 2]\n```", "units.0"),
        ('```json\n"just a string"\n```', 'expected a JSON object with a "units" list'),
    ],
)
def test_invalid_answers_are_sent_back_with_the_reason(bad: str, problem: str) -> None:
    ask = RoutedAsk({None: [bad, answer(unit("Fine"))]})
    tree = plan(ask)
    assert [u.title for u in tree.units] == ["Fine"]
    assert problem in ask.prompts_for(None)[1]


def test_dependency_cycle_is_sent_back() -> None:
    cyclic = answer(
        unit("A", dependencies=["C"]), unit("B", dependencies=["A"]), unit("C", dependencies=["B"])
    )
    ask = RoutedAsk({None: [cyclic, answer(unit("A"), unit("B", dependencies=["A"]))]})
    tree = plan(ask)
    assert tree.get("2").dependencies == ["1"]
    assert "the dependencies form a cycle: 'A' -> 'C' -> 'B' -> 'A'" in ask.prompts_for(None)[1]


def test_cycle_every_time_fails() -> None:
    cyclic = answer(unit("A", dependencies=["B"]), unit("B", dependencies=["A"]))
    ask = RoutedAsk({None: [cyclic] * 3})
    with pytest.raises(PlanningFailed, match="cycle"):
        plan(ask)


def test_a_subtree_that_keeps_failing_fails_the_plan() -> None:
    ask = RoutedAsk(
        {
            None: [answer(unit("A", leaf=False), unit("B", leaf=False))],
            "1": ["garbage"] * 3,
            "2": [answer(unit("B1"))] * 3,
        }
    )
    with pytest.raises(PlanningFailed, match="node 1 \\('A'\\)"):
        plan(ask, max_parse_retries=2)


def test_bare_list_answer_is_accepted() -> None:
    ask = RoutedAsk({None: ['```json\n[{"title": "Solo", "priority": 1}]\n```']})
    tree = plan(ask)
    assert tree.get("1").node.priority == 1 and tree.rationale == ""


def test_overlap_edges_added_between_leaves_of_different_subtrees() -> None:
    ask = RoutedAsk(
        {
            None: [answer(unit("A", leaf=False), unit("B", files_hint=["src/core/"], priority=1))],
            "1": [
                answer(
                    unit("A1", files_hint=["src/core/io.py"]), unit("A2", files_hint=["lib/x.py"])
                )
            ],
        }
    )
    tree = plan(ask)
    # B has priority 1, so A1 (priority 3) touching a file under src/core/ waits for it
    assert tree.get("1.1").dependencies == ["2"]
    assert tree.get("1.2").dependencies == []
    assert tree.get("2").dependencies == []


def test_subtrees_are_planned_concurrently() -> None:
    active = 0
    peak = 0

    class SlowAsk(RoutedAsk):
        async def __call__(self, role: str, prompt: str) -> str:
            nonlocal active, peak
            active += 1
            peak = max(peak, active)
            await anyio.sleep(0.05)
            active -= 1
            return await super().__call__(role, prompt)

    answers: dict[str | None, list[str]] = {
        None: [answer(*(unit(f"N{i}", leaf=False) for i in range(4)))]
    }
    for i in range(1, 5):
        answers[str(i)] = [answer(unit(f"leaf {i}"))]
    tree = plan(SlowAsk(answers), concurrency=2)
    assert peak == 2
    assert [u.key for u in tree.units] == ["1", "1.1", "2", "2.1", "3", "3.1", "4", "4.1"]


def test_constructor_validates_limits() -> None:
    with pytest.raises(ValueError):
        RecursivePlanner(RoutedAsk({}), max_depth=0, max_children=3)
    with pytest.raises(ValueError):
        RecursivePlanner(RoutedAsk({}), max_depth=1, max_children=0)
