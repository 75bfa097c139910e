"""PlanNode / PlannerAnswer validation and PlanTree helpers."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from engine.planning.schema import SPECIALISTS, PlannedUnit, PlannerAnswer, PlanNode, PlanTree


def test_defaults() -> None:
    node = PlanNode(title="Add parser")
    assert node.priority == 3
    assert node.specialist == "general"
    assert node.leaf is True and node.uncertain is False
    assert node.files_hint == [] and node.dependencies == [] and node.acceptance_criteria == []


def test_title_is_normalised_and_bounded() -> None:
    assert PlanNode(title="  Add   the\nparser ").title == "Add the parser"
    with pytest.raises(ValidationError, match="must not be empty"):
        PlanNode(title="   ")
    with pytest.raises(ValidationError, match="keep it to 120"):
        PlanNode(title="x" * 121)
    assert len(PlanNode(title="x" * 120).title) == 120


@pytest.mark.parametrize("priority", [0, 6, -1])
def test_priority_range(priority: int) -> None:
    with pytest.raises(ValidationError):
        PlanNode(title="t", priority=priority)


def test_specialist_normalised_or_rejected() -> None:
    assert PlanNode(title="t", specialist="Test-Writer").specialist == "test_writer"
    assert PlanNode(title="t", specialist=None).specialist == "general"
    with pytest.raises(ValidationError, match="unknown specialist 'wizard'"):
        PlanNode(title="t", specialist="wizard")
    for name in SPECIALISTS:
        assert PlanNode(title="t", specialist=name).specialist == name


def test_lists_accept_a_lone_string_and_drop_blanks() -> None:
    node = PlanNode(
        title="t", files_hint="src/a.py", acceptance_criteria=["ok", "  "], dependencies=None
    )
    assert node.files_hint == ["src/a.py"]
    assert node.acceptance_criteria == ["ok"]
    assert node.dependencies == []


def test_extra_keys_ignored_and_units_required() -> None:
    answer = PlannerAnswer.model_validate({"units": [{"title": "a", "estimate": "2h"}], "x": 1})
    assert answer.units[0].title == "a"
    with pytest.raises(ValidationError):
        PlannerAnswer.model_validate({"units": []})
    with pytest.raises(ValidationError):
        PlannerAnswer.model_validate({"rationale": "no units"})


def _tree() -> PlanTree:
    def unit(
        key: str, parent: str | None, leaf: bool, deps: list[str] | None = None
    ) -> PlannedUnit:
        node = PlanNode(
            title=f"unit {key}",
            files_hint=[f"src/{key}.py"],
            acceptance_criteria=[f"criterion for {key}"],
        )
        return PlannedUnit(key, parent, key.count(".") + 1, node, leaf, deps or [])

    return PlanTree(
        units=[
            unit("1", None, False),
            unit("1.1", "1", True),
            unit("1.2", "1", True, ["1.1"]),
            unit("2", None, True, ["1.1", "1.2"]),
        ],
        rationale="because",
    )


def test_tree_helpers() -> None:
    tree = _tree()
    assert [u.key for u in tree.leaves()] == ["1.1", "1.2", "2"]
    assert [u.key for u in tree.inner()] == ["1"]
    assert [u.key for u in tree.children(None)] == ["1", "2"]
    assert [u.key for u in tree.children("1")] == ["1.1", "1.2"]
    assert tree.get("1.2").title == "unit 1.2"
    assert set(tree.by_key()) == {"1", "1.1", "1.2", "2"}
    with pytest.raises(KeyError):
        tree.get("9")


def test_outline_and_row() -> None:
    tree = _tree()
    text = tree.outline()
    assert "1. unit 1 [group, general, priority 3]" in text
    assert "  1.2. unit 1.2 [leaf" in text
    assert "after: 1.1, 1.2" in text
    assert "files: src/2.py" in text
    assert "accept:" not in tree.outline(details=False)
    row = tree.get("2").as_row()
    assert row["dependencies"] == ["1.1", "1.2"] and row["is_leaf"] == 1
    assert row["files_hint"] == ["src/2.py"] and row["specialist"] == "general"


def test_the_planner_may_mark_a_unit_uncertain() -> None:
    answer = PlannerAnswer.model_validate({"units": [
        {"title": "Fix the flaky cache", "uncertain": True}, {"title": "Rename x"}]})
    assert [u.uncertain for u in answer.units] == [True, False]
    unit = PlannedUnit(key="1", parent_key=None, depth=1, node=answer.units[0], is_leaf=True)
    assert unit.as_row()["uncertain"] == 1
