"""Overlap edges between leaves that touch the same files."""

from __future__ import annotations

import pytest

from engine.planning.graph import find_cycle, reaches
from engine.planning.overlap import (
    add_overlap_dependencies,
    hints_overlap,
    normalize_hint,
    paths_overlap,
)
from engine.planning.schema import PlannedUnit, PlanNode


def leaf(
    key: str,
    files: list[str],
    priority: int = 3,
    deps: list[str] | None = None,
    is_leaf: bool = True,
) -> PlannedUnit:
    node = PlanNode(title=f"unit {key}", files_hint=files, priority=priority)
    return PlannedUnit(key, None, 1, node, is_leaf, list(deps or []))


@pytest.mark.parametrize(
    ("hint", "expected"),
    [
        ("src/a.py", "src/a.py"),
        ("./src/a.py", "src/a.py"),
        ("src/", "src"),
        ("/src/x/", "src/x"),
        ("src\\win\\f.py", "src/win/f.py"),
        ("src/api/*.py", "src/api"),
        ("src/a*", "src"),
        ("**/*.py", ""),
        (".", ""),
        ("", ""),
        ("src/../lib/x.py", "lib/x.py"),
    ],
)
def test_normalize_hint(hint: str, expected: str) -> None:
    assert normalize_hint(hint) == expected


def test_paths_overlap() -> None:
    assert paths_overlap("src/a.py", "src/a.py")
    assert paths_overlap("src", "src/a.py")
    assert paths_overlap("src/a.py", "src")
    assert not paths_overlap("src/a.py", "src/ab.py")
    assert not paths_overlap("src/a", "src/ab")
    assert not paths_overlap("", "src")


def test_later_by_priority_then_plan_order_depends_on_earlier() -> None:
    units = [leaf("1", ["src/a.py"]), leaf("2", ["src/a.py"], priority=1), leaf("3", ["src/"])]
    # order: "2" (priority 1), then "1", then "3" (same priority as "1", later in the plan)
    assert add_overlap_dependencies(units) == 2
    assert units[1].dependencies == []
    assert units[0].dependencies == ["2"]
    assert units[2].dependencies == ["1"]  # and reaches "2" through "1": no extra edge


def test_same_file_leaves_become_a_chain() -> None:
    units = [leaf("1", ["src/a.py"]), leaf("2", ["./src/a.py"]), leaf("3", ["src/a.py"])]
    assert add_overlap_dependencies(units) == 2
    assert [u.dependencies for u in units] == [[], ["1"], ["2"]]


def test_disjoint_hints_add_nothing() -> None:
    units = [leaf("1", ["src/a.py"]), leaf("2", ["src/b.py"]), leaf("3", [])]
    assert add_overlap_dependencies(units) == 0
    assert all(u.dependencies == [] for u in units)


def test_existing_dependency_in_either_direction_is_respected() -> None:
    # "1" is earlier in order, but already depends on "2": adding 2 -> 1 would be a cycle
    units = [leaf("1", ["src/a.py"], deps=["2"]), leaf("2", ["src/a.py"])]
    assert add_overlap_dependencies(units) == 0
    assert find_cycle({u.key: u.dependencies for u in units}) is None
    # "2" already depends on "1": no duplicate edge
    units = [leaf("1", ["src/a.py"]), leaf("2", ["src/a.py"], deps=["1"])]
    assert add_overlap_dependencies(units) == 0
    assert units[1].dependencies == ["1"]


def test_transitive_dependency_is_enough() -> None:
    units = [leaf("1", ["x.py"]), leaf("2", ["y.py"], deps=["1"]), leaf("3", ["x.py"], deps=["2"])]
    assert add_overlap_dependencies(units) == 0


def test_inner_nodes_are_ignored() -> None:
    units = [leaf("1", ["src/"], is_leaf=False), leaf("2", ["src/a.py"])]
    assert add_overlap_dependencies(units) == 0
    assert units[0].dependencies == []


def test_never_creates_a_cycle_on_a_dense_random_plan() -> None:
    import random

    rng = random.Random(7)
    files = ["a", "a/b", "a/b/c.py", "d.py", "e/", "e/f.py"]
    for _ in range(50):
        units = [
            leaf(str(i), rng.sample(files, rng.randint(0, 3)), priority=rng.randint(1, 5))
            for i in range(10)
        ]
        # random pre-existing acyclic edges: only to lower keys
        for i, u in enumerate(units):
            u.dependencies = [str(j) for j in range(i) if rng.random() < 0.15]
        add_overlap_dependencies(units)
        edges = {u.key: u.dependencies for u in units}
        assert find_cycle(edges) is None
        # every overlapping pair is now ordered one way or the other
        for a in units:
            for b in units:
                if a is b:
                    continue
                if hints_overlap(a.node.files_hint, b.node.files_hint):
                    assert reaches(edges, a.key, b.key) or reaches(edges, b.key, a.key)


def test_find_cycle_reports_the_loop() -> None:
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["a"]}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": ["b"], "b": [], "c": ["zz"]}) is None
    assert find_cycle({"a": ["a"]}) == ["a", "a"]
