"""Pilot tests: every pane shows the store, number keys focus panes, / filters, sizes."""

from __future__ import annotations

import pytest
from textual.widgets import DataTable

from mc_tui.screens.too_small import TooSmallScreen
from mc_tui.widgets.approvals import ApprovalsTable
from mc_tui.widgets.event_log import EventLog
from mc_tui.widgets.merge_queue import MergeQueueTable
from mc_tui.widgets.mission_state import AGENT_LOG_MAX, EVENT_LOG_MAX
from mc_tui.widgets.plan_tree import PlanTree
from mc_tui.widgets.unit_details import UnitDetails
from mc_tui.widgets.worker_log import WorkerLog
from mc_tui.widgets.workers import WorkersTable
from tests.tui.conftest import renderable_text, screen_text, settle

pytestmark = pytest.mark.anyio


async def test_every_pane_is_drawn_from_the_store(calm_world) -> None:
    app = calm_world.app()
    store, mid = calm_world.store, calm_world.mission.mission_id
    async with app.run_test(size=(140, 44)) as pilot:
        await settle(pilot, app)
        tree = app.query_one(PlanTree)
        units = store.units(mid)
        assert set(tree._unit_nodes) == {u["id"] for u in units} | {
            f"epoch-{e['id']}" for e in store.rows("epochs")}
        workers = app.query_one(WorkersTable)
        assert workers.row_count == 4  # one row per slot seen
        running = {r["slot"] for r in store.rows("attempts", "status = 'running'")}
        for slot in running:
            state = str(workers.get_cell(f"slot-{slot}", "state"))
            assert "running" in state or "quiet" in state  # quiet: silent for a while
            assert "/" in str(workers.get_cell(f"slot-{slot}", "agent"))  # backend/model
        merges = app.query_one(MergeQueueTable)
        assert {f"m{m['id']}" for m in store.rows("merges")} <= set(merges.keys())
        # fixup candidates keyed (unit, round, candidate), scored as the engine chooses them
        assert {"fE2-3.1/1/1", "fE2-3.1/1/2", "fE2-3.1/1/3"} <= set(merges.keys())
        assert "winner" in str(merges.get_cell("fE2-3.1/1/3", "state"))
        assert "lost" in str(merges.get_cell("fE2-3.1/1/1", "state"))
        assert "tests 12/12  lint 0  diff 18 lines" in merges.get_cell("fE2-3.1/1/3", "detail")
        keys = set(merges.keys())
        assert not any(k.endswith("/?") for k in keys)  # no "fix?" rows
        verifying = next(m for m in store.rows("merges") if m["status"] == "verifying")
        assert str(merges.get_cell(f"m{verifying['id']}", "state")).endswith("5:14")  # elapsed
        failed = next(m for m in store.rows("merges") if m["status"] == "failed")
        assert "verification failed" in merges.get_cell(f"m{failed['id']}", "detail")
        assert app.query_one(ApprovalsTable).row_count == 1
        assert app.query_one(EventLog).line_count > 20
        text = screen_text(app)
        for needle in ("synthetic", "epoch 2", "/$50.00", "wall 10:00", "running", "1 Plan",
                       "2 Workers", "3 Merge queue", "4 Approvals", "5 Cost", "6 Events"):
            assert needle in text, needle


@pytest.mark.parametrize("size", [(80, 24), (120, 40), (200, 60)])
async def test_sizes_from_80x24_up_show_all_panes(calm_world, size) -> None:
    app = calm_world.app()
    async with app.run_test(size=size) as pilot:
        await settle(pilot, app)
        text = screen_text(app)
        assert not isinstance(app.screen, TooSmallScreen)
        for n in range(1, 7):
            assert f"─ {n} " in text


async def test_z_zooms_the_focused_pane_on_a_small_terminal(calm_world) -> None:
    app = calm_world.app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app)
        log = app.query_one(WorkerLog)
        assert not log.display  # no room for the live log at 80x24 ...
        await pilot.press("2", "z")
        assert app.screen.maximized is not None and app.screen.maximized.id == "pane-workers"
        await settle(pilot, app)
        assert log.display and log.region.height > 3  # ... until the pane is zoomed
        assert "1 Plan" not in screen_text(app)
        await pilot.press("z")
        assert app.screen.maximized is None
        assert "1 Plan" in screen_text(app)


async def test_too_small_shows_a_message_and_recovers(calm_world) -> None:
    app = calm_world.app()
    async with app.run_test(size=(60, 20)) as pilot:
        await settle(pilot, app)
        assert isinstance(app.screen, TooSmallScreen)
        assert "Terminal too small" in screen_text(app)
        assert "60x20" in screen_text(app)
        await pilot.resize_terminal(100, 30)
        await settle(pilot, app)
        assert not isinstance(app.screen, TooSmallScreen)
        assert "1 Plan" in screen_text(app)


async def test_number_keys_focus_panes(calm_world) -> None:
    app = calm_world.app()
    expected = {"1": "plan-tree", "2": "workers", "3": "merge-queue", "4": "approvals",
                "5": "cost-graph", "6": "event-log"}
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        for key in ["6", "1", "2", "3", "4", "5", "6", "2"]:
            await pilot.press(key)
            assert app.focused is not None and app.focused.id == expected[key], key
        assert "2 Workers" in screen_text(app)


async def test_selecting_a_unit_shows_details_and_worker_log_follows_slot(calm_world) -> None:
    app = calm_world.app()
    async with app.run_test(size=(140, 44)) as pilot:
        await settle(pilot, app)
        tree = app.query_one(PlanTree)
        assert tree.select_unit("E1-1.2")
        await settle(pilot, app)
        details = app.query_one(UnitDetails)
        assert details.unit_id == "E1-1.2"
        assert "Acceptance criteria" in screen_text(app)
        body = renderable_text(details._body.content)
        for needle in ("Attempts", "review", "2 files changed, 7 insertions(+)", "+# E1-1.2:",
                       "pytest -q passes"):
            assert needle in body, needle
        await pilot.press("2")
        table = app.query_one(WorkersTable)
        table.move_cursor(row=table.get_row_index("slot-3"))
        await settle(pilot, app)
        log = app.query_one(WorkerLog)
        assert log.slot == 3
        assert log.line_count == len(app.state.agent_log[3])
        assert any("↳" in line for line in log.lines)  # folded tool results


async def test_filter_the_merge_queue_and_clear_it(calm_world) -> None:
    app = calm_world.app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        table = app.query_one(MergeQueueTable)
        total = table.row_count
        await pilot.press("3", "slash")
        assert app.focused is not None and app.focused.id == "filter"
        await pilot.press(*"promoted")
        assert table.row_count == 3
        assert "/promoted" in screen_text(app)
        await pilot.press("enter")
        assert app.focused is table and table.row_count == 3
        await pilot.press("slash", "escape")
        assert table.row_count == total
        assert app.focused is table


async def test_filter_the_plan_tree_keeps_ancestors(calm_world) -> None:
    app = calm_world.app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        await pilot.press("1", "slash", *"audit", "enter")
        tree = app.query_one(PlanTree)
        assert set(tree._unit_nodes) == {"epoch-1", "epoch-2", "E2-3", "E2-3.2"}


async def test_filter_the_event_log(calm_world) -> None:
    app = calm_world.app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        log = app.query_one(EventLog)
        await pilot.press("6", "slash", *"fixup.", "enter")
        assert log.line_count == 5  # started, three candidates, winner
        assert all("fixup." in line for line in log.lines)


async def test_filter_goes_to_the_focused_filterable_pane_only(calm_world) -> None:
    """The / bar talks to whatever focused widget declares the Filterable protocol."""
    from mc_tui.protocols import Filterable
    from mc_tui.widgets.workers import WorkersTable

    app = calm_world.app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        for widget in (PlanTree, MergeQueueTable, EventLog, WorkersTable):
            assert isinstance(app.query_one(widget), Filterable)
        await pilot.press("2", "slash", *"E2-1")
        workers = app.query_one(WorkersTable)
        assert app.main.filter_target is workers and workers.filter_text == "E2-1"
        assert app.query_one(EventLog).filter_text == "" and app.query_one(PlanTree).filter_text == ""
        await pilot.press("escape")
        assert workers.filter_text == "" and app.focused is workers
        app.query_one("#cost-graph").focus()  # the cost graph is not a list: nothing to filter
        await pilot.pause()
        await pilot.press("slash")
        assert not app.main.has_class("-filtering")


async def test_filter_without_a_list_focused_explains(calm_world) -> None:
    app = calm_world.app()
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        await settle(pilot, app)
        app.set_focus(None)
        await pilot.press("slash")
        assert app.focused is None
        assert any("focus a list" in n.message for n in app._notifications)


async def test_tables_update_by_key_never_cleared(calm_world, monkeypatch) -> None:
    app = calm_world.app()
    store, mid = calm_world.store, calm_world.mission.mission_id
    clears: list[str] = []
    original = DataTable.clear

    def counting_clear(self, columns: bool = False):  # type: ignore[no-untyped-def]
        clears.append(self.id or "")
        return original(self, columns)

    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        monkeypatch.setattr(DataTable, "clear", counting_clear)
        merge = next(m for m in store.rows("merges") if m["status"] == "queued")
        store.set_status("merges", merge["id"], "merging")
        store.set_status("units", merge["unit_id"], "merging")
        attempt = store.rows("attempts", "status = 'running'")[0]
        store.set_status("attempts", attempt["id"], "completed", ended_at=attempt["started_at"] + 5)
        await settle(pilot, app)
        assert clears == []
        assert "merging" in str(app.query_one(MergeQueueTable).get_cell(f"m{merge['id']}", "state"))
        label = app.query_one(PlanTree)._labels[merge["unit_id"]].plain
        assert label.startswith("⇢")
        assert "completed" in str(app.query_one(WorkersTable).get_cell(f"slot-{attempt['slot']}", "state"))
        assert mid == app.state.mission_id


async def test_logs_stay_bounded_under_a_flood(calm_world) -> None:
    app = calm_world.app()
    store, mid = calm_world.store, calm_world.mission.mission_id
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        app.query_one(WorkersTable).move_cursor(row=0)
        slot = app.query_one(WorkersTable).selected_slot()
        attempt = app.state.slot_attempt[slot]
        with store.transaction():
            for n in range(3000):
                store.append_event("agent.event", mission_id=mid, attempt_id=attempt, slot=slot,
                                   type="text", text=f"chatter {n}")
                store.append_event("log", mission_id=mid, level="info", message=f"log {n}")
        for _ in range(20):
            await settle(pilot, app, rounds=1)
            if app.state.events_applied >= 6000:
                break
        assert app.state.events_applied >= 6000
        log = app.query_one(WorkerLog)
        assert log.line_count <= AGENT_LOG_MAX
        assert log.lines[-1] == "chatter 2999"
        assert app.query_one(EventLog).line_count <= EVENT_LOG_MAX
        assert len(app.state.event_log) <= EVENT_LOG_MAX


async def test_cost_graph_keeps_the_budget_on_the_scale(calm_world) -> None:
    calm_world.config.scheduler.budget.max_per_run_usd = 1000.0  # spend is ~1% of it
    app = calm_world.app()
    async with app.run_test(size=(140, 44)) as pilot:
        await settle(pilot, app)
        text = screen_text(app)
        assert "budget" in text and "off the scale" not in text
        assert "proj" in text


async def test_unit_details_show_why_an_attempt_was_denied(calm_world) -> None:
    store = calm_world.store
    attempt = store.rows("attempts", "unit_id = ?", ("E1-1.2",))[0]
    store.update("attempts", attempt["id"], status="completed", failure_reason="denied",
                 error="agent was denied: Write /r/.git/mc/pool/slot-1/a.py, "
                       "Bash(git add -A && git commit -m x)")
    app = calm_world.app()
    async with app.run_test(size=(140, 44)) as pilot:
        await settle(pilot, app)
        assert app.query_one(PlanTree).select_unit("E1-1.2")
        await settle(pilot, app)
        body = renderable_text(app.query_one(UnitDetails)._body.content)
        assert "denied: agent was denied: Write /r/.git/mc/pool/slot-1/a.py" in body
        assert "Bash(git add -A && git commit -m x)" in body


async def test_status_bar_says_when_permission_checks_are_off(calm_world) -> None:
    calm_world.config.agent.permission_mode = "bypassPermissions"
    app = calm_world.app()
    async with app.run_test(size=(140, 44)) as pilot:
        await settle(pilot, app)
        assert "NO PERMISSION CHECKS" in screen_text(app)
    calm_world.config.agent.permission_mode = None
    app = calm_world.app()
    async with app.run_test(size=(140, 44)) as pilot:
        await settle(pilot, app)
        assert "NO PERMISSION CHECKS" not in screen_text(app)


async def test_unit_details_show_the_context_its_worker_reported(calm_world) -> None:
    store = calm_world.store
    unit = store.get("units", "E1-1.2")
    store.append_event("unit.context", mission_id=unit["mission_id"], unit_id="E1-1.2",
                       attempt_id=1, files_changed=["a.py"], items=[
                           {"kind": "convention", "text": "modules start with an SPDX header",
                            "paths": ["app/"]},
                           {"kind": "gotcha", "text": "the CLI imports bye()", "paths": []}])
    app = calm_world.app()
    async with app.run_test(size=(140, 44)) as pilot:
        await settle(pilot, app)
        assert app.query_one(PlanTree).select_unit("E1-1.2")
        await settle(pilot, app)
        body = renderable_text(app.query_one(UnitDetails)._body.content)
        assert "Reported for later units" in body
        assert "convention (app/): modules start with an SPDX header" in body
        assert "gotcha: the CLI imports bye()" in body
