"""Ambition gate: heuristic score, weighting, model answer handling."""

from __future__ import annotations

import anyio
import pytest
from llm_fakes import Canned

from engine.planning.ambition import (
    ambition_gate,
    combine,
    heuristic_score,
    is_specific_criterion,
    is_trivial_title,
    parse_ambition,
)
from engine.planning.parse import PlanParseError
from engine.planning.schema import PlannedUnit, PlanNode, PlanTree


def tree_of(*nodes: PlanNode) -> PlanTree:
    return PlanTree(
        units=[PlannedUnit(str(i), None, 1, n, True, []) for i, n in enumerate(nodes, 1)],
        rationale="r",
    )


def trivial_plan() -> PlanTree:
    return tree_of(
        PlanNode(title="Fix typo in README", files_hint=["README.md"]),
        PlanNode(
            title="Rename variable x to count",
            files_hint=["README.md"],
            acceptance_criteria=["done"],
        ),
    )


def rich_plan() -> PlanTree:
    return tree_of(
        PlanNode(
            title="Add token bucket limiter",
            files_hint=["src/client/limit.py"],
            acceptance_criteria=["burst of 10 then 5 requests per second is enforced"],
        ),
        PlanNode(
            title="Wire limiter into ApiClient.request",
            files_hint=["src/client/api.py"],
            acceptance_criteria=["every request path acquires a token before sending"],
        ),
        PlanNode(
            title="Expose rate limits in the config file",
            files_hint=["src/config.py"],
            acceptance_criteria=["rate and burst are read from [client] in the TOML file"],
        ),
        PlanNode(
            title="Test limiter under concurrency",
            files_hint=["tests/test_limit.py"],
            acceptance_criteria=["50 concurrent calls take at least 8 seconds of fake time"],
        ),
        PlanNode(
            title="Document rate limiting",
            files_hint=["docs/limits.md"],
            acceptance_criteria=["docs explain rate, burst and the 429 retry policy"],
        ),
    )


def test_trivial_plan_scores_low_with_reasons() -> None:
    score, notes = heuristic_score(trivial_plan())
    assert score <= 2.0
    assert any("every unit is trivial" in n for n in notes)
    assert any("only 2 units" in n for n in notes)
    assert any("single file" in n for n in notes)
    assert any("no acceptance criteria" in n for n in notes)


def test_rich_plan_scores_high_without_complaints() -> None:
    score, notes = heuristic_score(rich_plan())
    assert score >= 9.0
    assert notes == []


def test_score_is_monotonic_in_substance() -> None:
    base = rich_plan()
    rich, _ = heuristic_score(base)
    vague = tree_of(
        *(
            PlanNode(
                title=u.node.title, files_hint=u.node.files_hint, acceptance_criteria=["tests pass"]
            )
            for u in base.leaves()
        )
    )
    vague_score, notes = heuristic_score(vague)
    assert vague_score < rich
    assert any("only vague acceptance criteria" in n for n in notes)
    one = tree_of(base.leaves()[0].node)
    assert heuristic_score(one)[0] < rich


def test_empty_and_clamped() -> None:
    assert heuristic_score(PlanTree(units=[]))[0] == 1.0
    bare = tree_of(PlanNode(title="Rename x"))
    assert heuristic_score(bare)[0] == 1.0  # 0 points, clamped up to 1


def test_inner_nodes_do_not_count() -> None:
    inner = PlannedUnit(
        "1", None, 1, PlanNode(title="Group", files_hint=["a", "b", "c"]), False, []
    )
    leaf = PlannedUnit("1.1", "1", 2, PlanNode(title="Fix typo"), True, [])
    score, notes = heuristic_score(PlanTree(units=[inner, leaf]))
    assert score == 1.0 and any("no unit names the files" in n for n in notes)


@pytest.mark.parametrize(
    "title",
    [
        "Fix typo in docs",
        "fix typos",
        "Rename helper",
        "Bump version to 1.2",
        "Reformat module",
        "Update README",
        "Add docstrings",
        "Sort imports",
    ],
)
def test_trivial_titles(title: str) -> None:
    assert is_trivial_title(title)


@pytest.mark.parametrize(
    "title", ["Add retry with backoff", "Implement the renamer command line tool"]
)
def test_substantial_titles(title: str) -> None:
    assert not is_trivial_title(title)


def test_specific_criteria() -> None:
    assert is_specific_criterion("tests/test_x.py covers the empty input case")
    assert not is_specific_criterion("tests pass")
    assert not is_specific_criterion("It works.")
    assert not is_specific_criterion("done")


def test_combine_weighting() -> None:
    assert combine(None, 4.0) == 4.0
    assert combine(10.0, 0.0) == 7.0
    assert combine(8.0, 2.0) == pytest.approx(0.7 * 8 + 0.3 * 2)
    assert combine(1.0, 1.0) == 1.0
    assert combine(None, 0.2) == 1.0  # clamped


def test_parse_ambition() -> None:
    assert parse_ambition('```json\n{"score": "7/10", "feedback": " more tests "}\n```') == (
        7.0,
        "more tests",
    )
    assert parse_ambition('{"score": 3}') == (3.0, "")
    for bad in ['{"score": 11}', '{"score": 0}', '{"feedback": "x"}', '{"score": "high"}', "no"]:
        with pytest.raises(PlanParseError):
            parse_ambition(bad)


def test_gate_combines_model_and_heuristic() -> None:
    ask = Canned('{"score": 8, "feedback": "Solid plan; add load tests."}')
    tree = rich_plan()
    verdict = anyio.run(lambda: ambition_gate(ask, tree, "Add rate limiting", min_score=6.0))
    h, _ = heuristic_score(tree)
    assert verdict.llm_score == 8.0 and verdict.heuristic_score == h
    assert verdict.score == combine(8.0, h)
    assert verdict.accepted
    assert verdict.feedback.startswith("Solid plan; add load tests.")
    assert verdict.event_payload()["llm_score"] == 8.0
    assert set(verdict.event_payload()) == {
        "score",
        "llm_score",
        "heuristic_score",
        "accepted",
        "feedback",
    }
    role, prompt = ask.calls[0]
    assert role == "ambition"
    assert "Add rate limiting" in prompt and "Wire limiter into ApiClient.request" in prompt
    assert "(5 leaf units)" in prompt and "Planner's rationale: r" in prompt


def test_gate_rejects_timid_plan() -> None:
    ask = Canned('{"score": 2, "feedback": "Only cosmetic changes."}')
    verdict = anyio.run(
        lambda: ambition_gate(ask, trivial_plan(), "Add rate limiting", min_score=4.0)
    )
    assert not verdict.accepted
    assert "Only cosmetic changes." in verdict.feedback
    assert "every unit is trivial" in verdict.feedback


def test_gate_unparsable_answer_uses_heuristic_only() -> None:
    ask = Canned("I like it!")
    verdict = anyio.run(lambda: ambition_gate(ask, rich_plan(), "o", min_score=9.0))
    assert verdict.llm_score is None
    assert verdict.score == verdict.heuristic_score
    assert verdict.accepted == (verdict.heuristic_score >= 9.0)
    assert "unusable" in verdict.feedback


def test_gate_survives_a_failing_model() -> None:
    ask = Canned(RuntimeError("agent crashed"))
    verdict = anyio.run(lambda: ambition_gate(ask, trivial_plan(), "o", min_score=4.0))
    assert verdict.llm_score is None and not verdict.accepted
    assert "RuntimeError: agent crashed" in verdict.feedback
