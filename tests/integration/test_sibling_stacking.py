"""Stacking on siblings (``[scheduler] stack_on_siblings``, engine/stacking.py): a unit whose
plan-tree sibling's agent is done but whose work is not merged yet starts on that work, so
the two do not conflict when the second merges (the fleet benchmark's late conflicts were
siblings started on the same mc/green)."""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
import pytest

from engine.config import load_config
from engine.controller import Controller
from engine.ledger import Unit
from engine.models import UnitStatus
from engine.stacking import settle_stacks, sibling_heads, stacked_under
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


def hot_worker(title: str, own: str, line: str) -> str:
    """``title``'s agent: its own file, and ``line`` as the whole of shared/hot.txt (the
    file both siblings of part A write and neither declared)."""
    return f'''
[[interaction]]
role = "worker"
when = {{ unit_title = "{title}" }}
cost_usd = 0.1
actions = [
  {{ type = "write", path = "{own}", content = "X = 1\\n" }},
  {{ type = "write", path = "shared/hot.txt", content = "{line}\\n" }},
  {{ type = "commit", message = "{title}" }},
]
'''


@pytest.mark.parametrize("on", [True, False])
def test_a_sibling_starts_on_its_finished_sibling_and_does_not_conflict(
    tmp_path: Path, on: bool,
) -> None:
    # one worker: "A one" runs, then "B one" (anti-affinity), then "A two" while "A one"
    # still verifies in the queue (1.5 s). Both A leaves write shared/hot.txt.
    repo = make_target(tmp_path)
    cassette = (two_level_plan() + AMBITION_OK + OBJECTIVE_MET
                + hot_worker("A one", "a/one.py", "from A one")
                + hot_worker("A two", "a/two.py", "from A two")
                + worker_entry("B one", "b/one.py", "Y = 1\\n")
                + worker_entry("B two", "b/two.py", "Y = 1\\n"))
    config = load_config(write_config(
        tmp_path, cassette,
        "[scheduler]\nstacked_branches = true\n"
        f"stack_on_siblings = {'true' if on else 'false'}\n"
        "[scheduler.parallel]\nnum_workers = 1\n[planner]\nmax_depth = 2\n"
        "[green_branch]\nfixup_max_attempts = 0\n"
        f'[target.verification]\ncommand = "sleep 1.5; {sys.executable} -m unittest '
        'discover -s tests -t ."\n'))
    store = Store(config.db_path())
    outcome = anyio.run(Controller(config, store).run)
    units = {u["title"]: u for u in store.units(outcome.mission_id) if u["is_leaf"]}
    one, two = units["A one"], units["A two"]
    assert worker_order(store)[:3] == ["A one", "B one", "A two"]
    conflicts = store.rows("merges", "status = 'conflict'")
    if not on:  # started on mc/green without A one's work: it conflicts when A one merged
        assert [r["unit_id"] for r in conflicts] == [two["id"]]
        assert two["status"] == "failed" and two["stacked_on"] is None
        store.close()
        return
    assert outcome.status == "completed", outcome.reason
    assert conflicts == [] and not store.rows("events", "kind = 'fixup.started'")
    stacked = two["stacked_on"]
    assert stacked["heads"] == {one["id"]: one["head_commit"]}, stacked
    assert stacked["siblings"] == [one["id"]]
    # its merge row required A one's head: mc/green got A one, then A two on top of it
    assert [r["requires"] for r in store.rows("merges", "unit_id = ?", (two["id"],))] == [
        [one["head_commit"]]]
    assert git(repo, "show", "mc/green:shared/hot.txt").strip() == "from A two"
    assert git(repo, "merge-base", "--is-ancestor", one["head_commit"], "mc/green") == ""
    store.close()


def unit(uid: str, parent: str, status: UnitStatus, head: str | None = None,
         deps: list[str] | None = None, stacked: dict | None = None) -> Unit:
    return Unit(id=uid, mission_id=1, title=uid, status=status, parent_id=parent, is_leaf=True,
                head_commit=head, dependencies=deps or [], stacked_on=stacked)


def test_sibling_heads_skips_its_chain_unfinished_work_and_stacks_that_hold_it(
    tmp_path: Path,
) -> None:
    rt = make_runtime(tmp_path, "", "")
    green = rt.repo.green_head()
    heads = {n: commit_on_branch(rt, f"mc/unit/{n}", green, f"app/{n}.py", "X = 1\n", n)
             for n in ("a1", "a2", "a3", "a4", "b1")}
    me = unit("me", "A", UnitStatus.READY, deps=["a4"])
    units = [
        me,
        unit("a1", "A", UnitStatus.QUEUED, heads["a1"]),  # done, on its way: stacked on
        unit("a2", "A", UnitStatus.RUNNING),  # its agent runs: no head to start on
        unit("a3", "A", UnitStatus.REVIEWING, heads["a3"],  # its stack holds me: each would
             stacked={"heads": {"me": heads["a1"]}}),      # wait for the other
        unit("a4", "A", UnitStatus.QUEUED, heads["a4"]),  # a dependency, not a sibling stack
        unit("a5", "A", UnitStatus.FIXUP, heads["a1"]),  # being repaired
        unit("a6", "A", UnitStatus.MERGED, green),
        unit("b1", "B", UnitStatus.QUEUED, heads["b1"]),  # another part's
    ]
    assert sibling_heads(rt, me, units, green) == {"a1": heads["a1"]}
    by_id = {u.id: u for u in units}
    assert stacked_under(by_id["a3"], by_id) == {"me"}
    rt.store.close()


@pytest.mark.parametrize("sibling_status", ["failed", "cancelled"])
def test_settle_stacks_runs_a_unit_again_when_the_sibling_it_stacked_on_is_gone(
    tmp_path: Path, sibling_status: str,
) -> None:
    # a dependency that is gone blocks its dependents; a sibling is no dependency: the unit
    # runs again from mc/green without its work
    rt = make_runtime(tmp_path, "", "[scheduler]\nstacked_branches = true\n")
    green0 = rt.repo.green_head()
    old = commit_on_branch(rt, "mc/unit/sib", green0, "app/sib.py", "X = 1\n", "sib")
    top = commit_on_branch(rt, "mc/unit/top", old, "app/top.py", "Y = 1\n", "top")
    add_unit(rt, "sib", UnitStatus.QUEUED, title="Sibling", branch="mc/unit/sib",
             head_commit=old)
    add_unit(rt, "top", UnitStatus.QUEUED, title="Top", branch="mc/unit/top", head_commit=top,
             stacked_on={"green": green0, "base": old, "heads": {"sib": old},
                         "siblings": ["sib"]})
    sib_merge = rt.queue.submit("sib", "mc/unit/sib", old)
    rt.queue.submit("top", "mc/unit/top", top, [old])
    rt.store.update("merges", sib_merge, status="failed")
    rt.units.move("sib", UnitStatus.FIXUP)
    assert settle_stacks(rt, rt.units.units(rt.mission_id)) == []  # a repair may merge it
    rt.units.move("sib", UnitStatus(sibling_status))
    assert settle_stacks(rt, rt.units.units(rt.mission_id)) == ["top"]
    row = rt.store.get("units", "top")
    assert (row["status"], row["stacked_on"]) == ("ready", None)
    assert "its sibling 'Sibling'" in row["reason"]
    assert rt.store.rows("merges", "unit_id = 'top'")[0]["status"] == "withdrawn"
    rt.store.close()


def test_work_stacked_on_a_withdrawn_stack_is_withdrawn_too_and_no_cycle_forms(
    tmp_path: Path,
) -> None:
    # Found by a review. Leaves W, T, U, H of one node; U depends on T. T (stacked on its
    # sibling W) was rejected by its review (READY); U is queued on T's and W's work; H
    # started on U's. W then fails for good: U is withdrawn (its sibling will not merge), and
    # H with it in the same pass (it holds U's let-go work). Before, H stayed queued on a head
    # that would never merge, T re-ran stacked on H (holding T's own rejected work), U on T's
    # new work: each waited for another, and the mission never ended.
    from engine.dispatch import submit
    from engine.stacking import Stack, plan_stack

    rt = make_runtime(tmp_path, "", "[scheduler]\nstacked_branches = true\n")
    green = rt.repo.green_head()

    def leaf(uid: str, status: UnitStatus, **fields: object) -> None:
        add_unit(rt, uid, status, title=uid, parent_id="P", branch=f"mc/unit/{uid}", **fields)

    add_unit(rt, "P", UnitStatus.PLANNED, title="P", is_leaf=0)
    h_w = commit_on_branch(rt, "mc/unit/W", green, "app/w.py", "W = 1\n", "W")
    h_t = commit_on_branch(rt, "mc/unit/T", h_w, "app/t.py", "T = 1\n", "T1")
    h_u = commit_on_branch(rt, "mc/unit/U", h_t, "app/u.py", "U = 1\n", "U1")
    leaf("W", UnitStatus.FIXUP, head_commit=h_w)
    leaf("T", UnitStatus.READY, head_commit=h_t,
         stacked_on={"green": green, "base": h_w, "heads": {"W": h_w}, "siblings": ["W"]})
    leaf("U", UnitStatus.QUEUED, head_commit=h_u, dependencies=["T"],
         stacked_on={"green": green, "base": h_t, "heads": {"T": h_t, "W": h_w},
                     "siblings": ["W"]})
    rt.queue.submit("U", "mc/unit/U", h_u, [h_t, h_w])
    leaf("H", UnitStatus.READY)
    stack = anyio.run(plan_stack, rt, rt.units.require("H"))
    assert isinstance(stack, Stack) and set(stack.heads) == {"U"}, stack
    h_h = commit_on_branch(rt, "mc/unit/H", stack.base, "app/h.py", "H = 1\n", "H1")
    rt.units.move("H", UnitStatus.RUNNING, stacked_on=stack.record(), base_commit=stack.base)
    submit(rt, "H", "mc/unit/H", h_h)

    rt.units.move("W", UnitStatus.FAILED, reason="fixup attempts exhausted")
    assert settle_stacks(rt, rt.units.units(rt.mission_id)) == ["U", "H"]
    assert {u: rt.units.require(u).status for u in "UH"} == {
        "U": UnitStatus.READY, "H": UnitStatus.READY}
    assert "redoing the work" in (rt.units.require("H").reason or "")
    # T runs again from mc/green: nothing of its own rejected work is under it
    stack_t = anyio.run(plan_stack, rt, rt.units.require("T"))
    assert stack_t is None, stack_t
    assert rt.queue.held() == [] and rt.queue.pending() == 0
    rt.store.close()
