"""Dispatch order on a real mission: with fewer workers than READY units, the unit others
wait for starts first (it is on their path), then the rest by age."""

from __future__ import annotations

import sys
from pathlib import Path

import anyio

from engine.config import load_config
from engine.controller import Controller
from engine.ledger import Unit
from engine.models import UnitStatus
from engine.pipeline.ordering import siblings_in_flight, waiting_on
from engine.store import Store
from tests.e2e.conftest import (
    AMBITION_OK,
    OBJECTIVE_MET,
    make_target,
    plan_of,
    worker_entry,
    write_config,
)

PLAN = plan_of(("Add a farewell", "app/bye.py"), ("Add a shout", "app/shout.py"),
               ("Test the shout", "app/shout_check.py", ["Add a shout"]))


def worker_order(store: Store) -> list[str]:
    """Unit titles in the order their worker sessions started."""
    return [r["title"] for r in store.query(
        "SELECT u.title FROM attempts a JOIN units u ON u.id = a.unit_id "
        "WHERE a.role = 'worker' ORDER BY a.started_at")]


def test_the_unit_others_wait_for_is_dispatched_first(tmp_path: Path) -> None:
    make_target(tmp_path)
    cassette = (PLAN + AMBITION_OK + OBJECTIVE_MET
                + worker_entry("Add a farewell", "app/bye.py", "X = 1\\n")
                + worker_entry("Add a shout", "app/shout.py", "Y = 1\\n")
                + worker_entry("Test the shout", "app/shout_check.py", "Z = 1\\n"))
    config = load_config(write_config(tmp_path, cassette, "[scheduler.parallel]\nnum_workers = 1\n"))
    store = Store(config.db_path())
    outcome = anyio.run(Controller(config, store).run)
    assert outcome.status == "completed", outcome.reason
    order = worker_order(store)
    # by age alone the farewell (planned first) went first and the test of the shout waited
    assert order == ["Add a shout", "Add a farewell", "Test the shout"]
    store.close()


def test_waiting_on_counts_leaves_downstream_through_chains() -> None:
    def unit(uid: str, status: UnitStatus, deps: list[str] = []) -> Unit:  # noqa: B006
        return Unit(id=uid, mission_id=1, title=uid, status=status, dependencies=deps)

    units = [unit("a", UnitStatus.READY), unit("b", UnitStatus.READY),
             unit("c", UnitStatus.PLANNED, ["a"]), unit("d", UnitStatus.PLANNED, ["c", "a"]),
             unit("e", UnitStatus.RUNNING, ["b"])]  # started already: waits for nobody
    assert waiting_on(units) == {"a": 2, "c": 1}


def two_level_plan(deps: dict[str, list[str]] | None = None) -> str:
    """Two parts of two leaves each (the parts' planners answer by their title); ``deps``:
    a leaf's sibling dependencies by title."""
    import json

    def planner(match: str | None, units: list[dict]) -> str:
        text = json.dumps({"units": units})
        when = f'match = "{match}"\n' if match else ""
        return f"\n[[interaction]]\nrole = \"planner\"\n{when}actions = [{{ type = \"text\", text = '{text}' }}]\n"

    def leaf(title: str, path: str) -> dict:
        return {"title": title, "files_hint": [path], "acceptance_criteria": ["ok"], "leaf": True,
                "dependencies": (deps or {}).get(title, [])}

    return (planner("- title: Part A", [leaf("A one", "a/one.py"), leaf("A two", "a/two.py")])
            + planner("- title: Part B", [leaf("B one", "b/one.py"), leaf("B two", "b/two.py")])
            + planner(None, [{"title": f"Part {p}", "files_hint": [f"{p.lower()}/"],
                              "acceptance_criteria": ["ok"], "leaf": False} for p in "AB"]))


def test_siblings_are_not_started_side_by_side_while_other_work_is_ready(tmp_path: Path) -> None:
    # siblings (leaves of one plan node) tend to touch the same code: two started on the same
    # mc/green conflict when the second merges. With two workers and both parts READY, the
    # first two to start are one leaf of each part, not both leaves of the older part.
    make_target(tmp_path)
    cassette = (two_level_plan() + AMBITION_OK + OBJECTIVE_MET
                + "".join(worker_entry(t, f"{t[0].lower()}/{t.split()[1]}.py", "X = 1\\n")
                          for t in ("A one", "A two", "B one", "B two")))
    config = load_config(write_config(tmp_path, cassette,
                                      "[scheduler.parallel]\nnum_workers = 2\n"
                                      "[planner]\nmax_depth = 2\n"))
    store = Store(config.db_path())
    outcome = anyio.run(Controller(config, store).run)
    assert outcome.status == "completed", outcome.reason
    first_two = set(worker_order(store)[:2])
    assert first_two == {"A one", "B one"}, first_two  # by age alone: A one, A two
    store.close()


def test_a_sibling_it_depends_on_does_not_hold_a_stacked_unit_back(tmp_path: Path) -> None:
    # "A two" depends on "A one". Once A one's agent is done (it verifies in the queue for
    # 1.5 s) A two can start stacked on it; A one is in flight, but A two is built on its
    # work, so they cannot conflict and anti-affinity must not put A two behind part B (the
    # fleet benchmark's critical chain waited 3.9 s for a slot that way).
    make_target(tmp_path)
    cassette = (two_level_plan({"A two": ["A one"]}) + AMBITION_OK + OBJECTIVE_MET
                + "".join(worker_entry(t, f"{t[0].lower()}/{t.split()[1]}.py", "X = 1\\n")
                          for t in ("A one", "A two", "B one", "B two")))
    config = load_config(write_config(
        tmp_path, cassette,
        "[scheduler.parallel]\nnum_workers = 1\n[planner]\nmax_depth = 2\n"
        f'[target.verification]\ncommand = "sleep 1.5; {sys.executable} -m unittest '
        'discover -s tests -t ."\n'))
    store = Store(config.db_path())
    outcome = anyio.run(Controller(config, store).run)
    assert outcome.status == "completed", outcome.reason
    order = worker_order(store)
    assert order[:2] == ["A one", "A two"], order  # counted as in flight: "B one" second
    stacked = store.query("SELECT stacked_on FROM units WHERE title = 'A two'")[0]["stacked_on"]
    assert stacked, "A two started before A one merged"
    store.close()


def test_siblings_in_flight_counts_the_started_unmerged_siblings_a_ready_leaf_could_conflict_with() -> None:
    def unit(uid: str, parent: str, status: UnitStatus, deps: list[str] = []) -> Unit:  # noqa: B006
        return Unit(id=uid, mission_id=1, title=uid, status=status, parent_id=parent,
                    dependencies=deps)

    units = [unit("a1", "A", UnitStatus.RUNNING), unit("a2", "A", UnitStatus.QUEUED, ["a0"]),
             unit("a0", "A", UnitStatus.READY), unit("a3", "A", UnitStatus.READY),
             unit("a4", "A", UnitStatus.MERGED), unit("a5", "A", UnitStatus.READY, ["a6"]),
             unit("a6", "A", UnitStatus.RUNNING, ["a1"]),
             unit("b1", "B", UnitStatus.FIXUP), unit("b2", "B", UnitStatus.READY),
             unit("c1", "C", UnitStatus.PLANNED), unit("c2", "C", UnitStatus.READY)]
    assert siblings_in_flight(units) == {
        "a3": 3,  # a1, a2, a6
        "a0": 2,  # a2 depends on it: it is built on a0's work (a1, a6)
        "a5": 1,  # waits for a6 and, through it, a1: only a2 can conflict with it
        "b2": 1,
    }
