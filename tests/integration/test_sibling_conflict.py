"""A conflict with a sibling's finished work found before the queue (engine/checks.py
``conflicts_with_siblings``): the unit goes to fixup at once, stacked on that work, so the
repair starts on it instead of after a precheck and a conflict in the queue."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anyio
import pytest

import engine.agents.worker as worker
import engine.checks as checks
from engine.checks import conflicted_with_siblings, conflicts_with_siblings
from engine.config import load_config
from engine.controller import Controller
from engine.models import UnitStatus
from engine.runtime import Runtime
from engine.stacking import repair_base
from engine.store import Store
from tests.e2e.conftest import (
    AMBITION_OK,
    OBJECTIVE_MET,
    git,
    make_target,
    worker_entry,
    write_config,
)
from tests.integration.mission_support import add_unit, commit_on_branch, make_runtime
from tests.integration.test_dispatch_order import two_level_plan, worker_order
from tests.integration.test_sibling_stacking import hot_worker

MARKERS = "grep -rqs '^<<<<<<<' shared"
# the repair: only where the candidate holds the conflict (its base has the sibling's work)
RESOLVE = f'''
[[interaction]]
role = "fixup"
when = {{ unit_title = "A two" }}
actions = [
  {{ type = "run", command = "{MARKERS} && printf 'from A one and A two\\\\n' > shared/hot.txt" }},
  {{ type = "commit", message = "fixup: A two" }},
]
'''


def sibling_mission(tmp_path: Path, precheck: bool, siblings: bool = True) -> tuple[Store, int]:
    # three workers: "A one", "B one" and "A two" start together (anti-affinity puts B one
    # second). A one is done at once and verifies (1.5 s: its precheck, then the queue);
    # A two is done 1 s later, while A one's work is on its way. Both write shared/hot.txt.
    make_target(tmp_path)
    cassette = (two_level_plan() + AMBITION_OK + OBJECTIVE_MET
                + hot_worker("A one", "a/one.py", "from A one")
                + hot_worker("A two", "a/two.py", "from A two").replace(
                    "actions = [\n", 'actions = [\n  { type = "sleep", seconds = 1.0 },\n', 1)
                + worker_entry("B one", "b/one.py", "Y = 1\\n")
                + worker_entry("B two", "b/two.py", "Y = 1\\n") + RESOLVE)
    config = load_config(write_config(
        tmp_path, cassette,
        f"[scheduler]\nstacked_branches = true\nstack_on_siblings = {str(siblings).lower()}\n"
        "[scheduler.parallel]\nnum_workers = 3\n[planner]\nmax_depth = 2\n"
        "[green_branch]\nfixup_candidates = 1\n"
        f'[target.verification]\nprecheck = {str(precheck).lower()}\n'
        f'command = "sleep 1.5; ! {MARKERS} && {sys.executable} -m unittest discover -s tests -t ."\n'))
    store = Store(config.db_path())
    outcome = anyio.run(Controller(config, store).run)
    assert outcome.status == "completed", outcome.reason
    return store, outcome.mission_id


@pytest.mark.parametrize("precheck", [True, False])
def test_a_conflict_with_a_siblings_finished_work_is_repaired_on_it_before_the_queue(
    tmp_path: Path, precheck: bool,
) -> None:
    store, mission_id = sibling_mission(tmp_path, precheck)
    units = {u["title"]: u for u in store.units(mission_id) if u["is_leaf"]}
    one, two = units["A one"], units["A two"]
    assert set(worker_order(store)[:3]) == {"A one", "B one", "A two"}
    # found when its agent was done: never a conflict in the queue, no precheck of work the
    # repair redoes, and its stack holds A one's work (what its merge waits for)
    assert store.rows("merges", "status = 'conflict'") == []
    moves = [json.loads(e["payload"]) for e in
             store.rows("events", "unit_id = ? AND kind = 'unit.status'", (two["id"],))]
    to_fixup = [m for m in moves if m["to"] == "fixup"]
    assert len(to_fixup) == 1 and "finished work of its sibling" in to_fixup[0]["reason"]
    assert to_fixup[0]["from"] == "running"  # before the queue
    assert not store.rows("events", "unit_id = ? AND kind = 'unit.prechecked'", (two["id"],))
    assert two["stacked_on"]["siblings"] == [one["id"]]
    assert two["stacked_on"]["heads"][one["id"]] == one["head_commit"]
    # the candidate started on A one's work: it held the conflict and resolved it
    rows = store.rows("merges", "unit_id = ?", (two["id"],))
    assert [r["branch"] for r in rows] == [f"mc/fixup/{two['id']}/1-1"]
    repo = tmp_path / "repo"
    assert git(repo, "show", "mc/green:shared/hot.txt").strip() == "from A one and A two"
    assert git(repo, "merge-base", "--is-ancestor", one["head_commit"], "mc/green") == ""
    store.close()


def test_without_stacking_on_siblings_the_queue_finds_the_conflict(tmp_path: Path) -> None:
    store, mission_id = sibling_mission(tmp_path, True, siblings=False)
    # found only once A one merged (in the queue, or with mc/green: a race), after A two's
    # precheck
    two = next(u for u in store.units(mission_id) if u["title"] == "A two")
    moves = [json.loads(e["payload"]) for e in
             store.rows("events", "unit_id = ? AND kind = 'unit.status'", (two["id"],))]
    to_fixup = [m for m in moves if m["to"] == "fixup"]
    assert len(to_fixup) == 1 and "sibling" not in to_fixup[0]["reason"], to_fixup
    assert to_fixup[0]["reason"].startswith("conflict in shared/hot.txt")
    assert store.rows("events", "unit_id = ? AND kind = 'unit.prechecked'", (two["id"],))
    assert two["stacked_on"] is None
    store.close()


def finished_siblings(rt: Runtime, green: str) -> dict[str, str]:
    """Leaves "one" and "two" of one part, both done (in their precheck), each writing its
    name as the whole of shared/hot.txt: their heads by id."""
    heads = {n: commit_on_branch(rt, f"mc/unit/{n}", green, "shared/hot.txt", f"{n}\n", n)
             for n in ("one", "two")}
    add_unit(rt, "part", UnitStatus.RUNNING, title="Part", is_leaf=0)
    for n in ("one", "two"):
        add_unit(rt, n, UnitStatus.RUNNING, title=n, branch=f"mc/unit/{n}", head_commit=heads[n],
                 base_commit=green, parent_id="part")
    return heads


def test_two_siblings_never_wait_on_each_other(tmp_path: Path) -> None:
    # both finished, each conflicting with the other: the first found goes to fixup on the
    # other's work; the other is then not stacked on it (its stack holds the other's work)
    rt = make_runtime(tmp_path, "", "[scheduler]\nstacked_branches = true\n")
    green = rt.repo.green_head()
    heads = finished_siblings(rt, green)

    async def both() -> tuple[tuple[dict, list], tuple[dict, list]]:
        found = await conflicts_with_siblings(rt, "two", heads["two"])
        conflicted_with_siblings(rt, "two", "mc/unit/two", heads["two"], *found)
        return found, await conflicts_with_siblings(rt, "one", heads["one"])

    (siblings, paths), after = anyio.run(both)
    assert siblings == {"one": heads["one"]} and paths == ["shared/hot.txt"]
    assert after == ({}, [])
    two = rt.units.require("two")
    assert two.status == UnitStatus.FIXUP
    assert two.stacked_on == {"green": green, "base": green, "heads": {"one": heads["one"]},
                              "siblings": ["one"], "clash": ["one"]}
    # its repair starts on the sibling's work
    base, _ = anyio.run(repair_base, rt, two, green)
    assert git(rt.repo.path, "show", f"{base}:shared/hot.txt") == "one"
    rt.store.close()


def test_siblings_work_is_not_probed_with_stacking_on_siblings_off(tmp_path: Path) -> None:
    rt = make_runtime(tmp_path, "", "[scheduler]\nstacked_branches = true\n"
                      "stack_on_siblings = false\n")
    green = rt.repo.green_head()
    heads = finished_siblings(rt, green)
    assert anyio.run(conflicts_with_siblings, rt, "two", heads["two"]) == ({}, [])
    rt.store.close()


def test_two_siblings_probing_at_once_end_with_one_stacked_on_the_other(tmp_path: Path) -> None:
    rt = make_runtime(tmp_path, "", "[scheduler]\nstacked_branches = true\n")
    heads = finished_siblings(rt, rt.repo.green_head())

    async def probe(uid: str) -> None:
        found, paths = await conflicts_with_siblings(rt, uid, heads[uid])
        if found:
            conflicted_with_siblings(rt, uid, f"mc/unit/{uid}", heads[uid], found, paths)

    async def both() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(probe, "one")
            tg.start_soon(probe, "two")

    anyio.run(both)
    units = [rt.units.require(u) for u in ("one", "two")]
    assert sorted(u.status for u in units) == sorted([UnitStatus.FIXUP, UnitStatus.RUNNING])
    rt.store.close()


@pytest.mark.parametrize("precheck", [True, False])
def test_no_worker_slot_is_given_back_twice_or_shared(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, precheck: bool,
) -> None:
    # a slot is given back when its agent ends (run_unit_agent(on_session_end=)) and again
    # when the unit's task ends: only the holder's first release counts
    problems: list[str] = []
    real_give = Runtime.give_slot

    def give(self: Runtime, slot: int) -> None:
        if slot in self.free_slots:
            problems.append(f"slot {slot} given back twice")
        real_give(self, slot)

    monkeypatch.setattr(Runtime, "give_slot", give)
    live: dict[int, str] = {}
    real_run = worker.run_recorded

    async def run_recorded(store, backend, req, *, mission_id, unit_id, slot):  # type: ignore[no-untyped-def]
        if slot is not None and slot in live:
            problems.append(f"slot {slot}: {unit_id} while {live[slot]} runs")
        if slot is not None:
            live[slot] = str(unit_id)
        try:
            return await real_run(store, backend, req, mission_id=mission_id,
                                  unit_id=unit_id, slot=slot)
        finally:
            if slot is not None:
                live.pop(slot, None)

    monkeypatch.setattr(worker, "run_recorded", run_recorded)
    store, _ = sibling_mission(tmp_path, precheck)
    store.close()
    assert problems == []


def test_siblings_whose_changes_share_no_path_are_not_test_merged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # only a path both changed can conflict: "three" (its own file) is never merged with
    # "two"; "one" (the same file as "two") is
    rt = make_runtime(tmp_path, "", "[scheduler]\nstacked_branches = true\n")
    green = rt.repo.green_head()
    heads = finished_siblings(rt, green)
    three = commit_on_branch(rt, "mc/unit/three", green, "app/three.py", "X = 3\n", "three")
    add_unit(rt, "three", UnitStatus.RUNNING, title="three", branch="mc/unit/three",
             head_commit=three, base_commit=green, parent_id="part")
    merged: list[list[str]] = []
    real = checks.merge_onto

    def spy(path, base, labelled):  # type: ignore[no-untyped-def]
        merged.append([label for label, _ in labelled])
        return real(path, base, labelled)

    monkeypatch.setattr(checks, "merge_onto", spy)
    found, paths = anyio.run(conflicts_with_siblings, rt, "two", heads["two"])
    assert found == {"one": heads["one"]} and paths == ["shared/hot.txt"]
    assert all("three" not in labels for labels in merged) and ["one", "two"] in merged
    rt.store.close()
