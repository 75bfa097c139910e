"""The plan tree shows a unit's speculation branches, as the real engine emits them (scripted
agents on a real repo): running while they work, then the winner and the losers."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.models import UnitStatus
from engine.speculation import run_branches
from mc_tui.app import MissionControlApp
from mc_tui.widgets.plan_tree import PlanTree
from tests.integration.mission_support import add_unit, make_runtime
from tests.integration.test_speculation import CASSETTE
from tests.tui.conftest import screen_text, settle

pytestmark = pytest.mark.anyio


async def test_the_plan_tree_shows_branches_live_and_after_a_restart(tmp_path: Path) -> None:
    rt = make_runtime(tmp_path, CASSETTE, "[speculation]\nenabled = true\nbranch_count = 3\n")
    add_unit(rt, "u1", UnitStatus.READY, uncertain=1)
    app = MissionControlApp(rt.store, config=rt.config, mission_id=rt.mission_id, attach=True)
    async with app.run_test(size=(160, 44)) as pilot:
        await settle(pilot, app)
        tree = app.query_one(PlanTree)
        assert tree.branch_labels("u1") == []
        assert "uncertain" in str(tree._unit_nodes["u1"].label)
        slot = min(rt.free_slots)
        rt.free_slots.discard(slot)
        await run_branches(rt, "u1", slot)  # the engine, in this loop, writing the store
        rt.give_slot(slot)
        await settle(pilot, app, rounds=3)
        lines = tree.branch_labels("u1")
        assert len(lines) == 3, lines
        assert lines[0].startswith("⑂ 1 lost") and "tests 0/1" in lines[0]  # broke the tests
        assert lines[1].startswith("⑂ 2 winner") and "tests 2/0" in lines[1]
        assert lines[2].startswith("⑂ 3 lost") and "$0.25" in lines[2]
        assert "Start from the tests" in lines[1]  # its approach hint
        node = tree._unit_nodes["u1"]
        assert node.allow_expand and node.is_expanded and len(node.children) == 3
        assert "2 winner" in screen_text(app)
        # a branch line selects its unit
        tree.move_cursor(node.children[1])
        assert tree.selected_unit() == "u1"
    # a TUI started afterwards reads the same from the store
    again = MissionControlApp(rt.store, config=rt.config, mission_id=rt.mission_id, attach=True)
    async with again.run_test(size=(160, 44)) as pilot:
        await settle(pilot, again)
        assert again.query_one(PlanTree).branch_labels("u1") == lines


async def test_the_plan_tree_marks_a_unit_working_on_a_stack(tmp_path: Path) -> None:
    # a unit started on dependencies not merged yet says so while it is in flight
    rt = make_runtime(tmp_path, CASSETTE, "")
    stack = {"green": "a" * 40, "base": "b" * 40, "heads": {"u0": "c" * 40}}
    add_unit(rt, "u1", UnitStatus.RUNNING, stacked_on=stack)
    add_unit(rt, "u2", UnitStatus.MERGED, stacked_on=stack)
    add_unit(rt, "u3", UnitStatus.RUNNING)
    app = MissionControlApp(rt.store, config=rt.config, mission_id=rt.mission_id, attach=True)
    async with app.run_test(size=(160, 44)) as pilot:
        await settle(pilot, app)
        nodes = app.query_one(PlanTree)._unit_nodes
        assert "stacked" in str(nodes["u1"].label)
        assert "stacked" not in str(nodes["u2"].label)  # merged: nothing left to say
        assert "stacked" not in str(nodes["u3"].label)
