"""Pilot tests of the human-in-the-loop modal: approve, deny, decided elsewhere, timeout."""

from __future__ import annotations

import re
import time

import pytest

from mc_tui.app import MissionControlApp
from mc_tui.exit_codes import EXIT_NOT_PUSHED
from mc_tui.screens.approval_modal import ApprovalModal
from mc_tui.screens.main import MainScreen
from mc_tui.widgets.approvals import ApprovalsTable
from tests.support.scripted_mission import scripted_mission
from tests.tui.conftest import renderable_text, screen_text, settle

pytestmark = pytest.mark.anyio


async def test_pending_approval_opens_the_modal_with_gate_unit_and_diff(world) -> None:
    app = world.app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        assert isinstance(app.screen, ApprovalModal)
        text = screen_text(app)
        assert "gate: push" in text
        assert "Push mc/green to origin/main" in text
        assert "unit: E2-1.3 Journal steps" in text
        assert "2 files changed, 7 insertions(+)" in text  # computed from the unit's real commits
        assert "+# E2-1.3: Journal steps" in text
        # frozen clock: expires 300 s after creation; 10 min into the mission
        row = world.store.get("approvals", world.mission.pending_approval)
        left = int(row["expires_at"] - app.clock())
        assert f"time left {left // 60}:{left % 60:02d}" in text
        assert "safe default (deny)" in text


@pytest.mark.parametrize(("keys", "expected"), [(("y",), "approved"), (("n",), "denied"),
                                                (("escape",), "denied")])
async def test_keys_decide_the_approval(world, keys, expected) -> None:
    app = world.app()
    approval_id = world.mission.pending_approval
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        assert isinstance(app.screen, ApprovalModal)
        await pilot.press(*keys)
        await settle(pilot, app)
        row = world.store.get("approvals", approval_id)
        assert row["status"] == expected and row["decided_by"] == "tui"
        assert isinstance(app.screen, MainScreen)
        table = app.query_one(ApprovalsTable)
        assert expected in str(table.get_cell(f"a{approval_id}", "status"))


async def test_a_decided_message_reaches_the_store(world) -> None:
    """The modal and the app talk through ApprovalModal.Decided: any screen posting it
    records the decision (by "tui") and the approvals pane shows it."""
    app = world.app()
    approval_id = world.mission.pending_approval
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        modal = app.screen
        assert isinstance(modal, ApprovalModal)
        app.post_message(ApprovalModal.Decided(approval_id, True))
        await settle(pilot, app)
        row = world.store.get("approvals", approval_id)
        assert row["status"] == "approved" and row["decided_by"] == "tui"
        assert isinstance(app.screen, MainScreen)  # the modal saw it decided and closed


async def test_an_answer_while_the_modal_is_covered_closes_it_later(world) -> None:
    """Decided is recorded at once; a modal covered by the too-small screen then closes when
    it is on top again (never left open on an answered approval)."""
    from mc_tui.screens.too_small import TooSmallScreen

    app = world.app()
    approval_id = world.mission.pending_approval
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        modal = app.screen
        assert isinstance(modal, ApprovalModal)
        await pilot.resize_terminal(60, 20)
        await pilot.pause()
        assert isinstance(app.screen, TooSmallScreen)
        modal.action_decide(False)
        await settle(pilot, app)
        assert world.store.get("approvals", approval_id)["status"] == "denied"
        await pilot.resize_terminal(120, 40)
        await settle(pilot, app, rounds=2)
        assert isinstance(app.screen, MainScreen)


async def test_decided_elsewhere_closes_the_modal(world) -> None:
    app = world.app()
    approval_id = world.mission.pending_approval
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        await settle(pilot, app)
        assert isinstance(app.screen, ApprovalModal)
        # another process (mc approve) decides it
        assert world.store.decide_approval(approval_id, True, by="cli")
        await settle(pilot, app)
        assert isinstance(app.screen, MainScreen)
        assert world.store.get("approvals", approval_id)["decided_by"] == "cli"
        assert any("approved by cli" in n.message for n in app._notifications)
        # a late key press must not decide anything again
        await pilot.press("n")
        assert world.store.get("approvals", approval_id)["status"] == "approved"


async def test_a_jumps_to_approvals_and_enter_reopens_a_pending_one(world) -> None:
    app = world.app()
    approval_id = world.mission.pending_approval
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        modal = app.screen
        assert isinstance(modal, ApprovalModal)
        # the countdown is display-only and follows the clock
        assert "time left" in renderable_text(modal.query_one("#countdown").content)
        modal.update_countdown(world.store.get("approvals", approval_id)["expires_at"] + 1)
        assert "time is up" in renderable_text(modal.query_one("#countdown").content)
        await pilot.press("a")  # inside the modal: not a dashboard key
        assert app.screen is modal
        await pilot.press("y")
        await settle(pilot, app)
        await pilot.press("a")
        assert app.focused is not None and app.focused.id == "approvals"
        assert isinstance(app.screen, MainScreen)  # nothing pending any more


async def wait_until(pilot, predicate, timeout: float = 60) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        await pilot.pause(0.02)
    return bool(predicate())


async def test_y_in_the_modal_approves_the_real_push_gate(tmp_path) -> None:
    """The real pipeline (scripted agents) asks at the push gate; y reaches the store through
    ApprovalModal.Decided and the engine pushes."""
    mission = scripted_mission(tmp_path, units=1, push_gate=True)
    store = mission.store
    app = MissionControlApp(store, config=mission.config, engine=mission.engine)
    async with app.run_test(size=(120, 40)) as pilot:
        assert await wait_until(pilot, lambda: isinstance(app.screen, ApprovalModal))
        await pilot.pause()
        assert "gate: push" in screen_text(app)
        await pilot.press("y")
        assert await wait_until(pilot, lambda: app.engine_code is not None)
        await settle(pilot, app)
        assert isinstance(app.screen, MainScreen)
    approval = store.rows("approvals")[0]
    assert approval["status"] == "approved" and approval["decided_by"] == "tui"
    push = store.query("SELECT payload FROM events WHERE kind = 'push.result'")
    assert '"ok": true' in push[-1]["payload"]
    assert app.engine_code == 0 and store.latest_mission()["status"] == "completed"
    store.close()


async def test_engine_timeout_expires_the_approval_and_closes_the_modal(tmp_path) -> None:
    # long enough that a loaded CI machine still paints the modal before the timeout
    mission = scripted_mission(tmp_path, units=1, push_gate=True, approval_timeout=2.5)
    store = mission.store
    app = MissionControlApp(store, config=mission.config, engine=mission.engine)
    async with app.run_test(size=(120, 40)) as pilot:
        assert await wait_until(pilot, lambda: isinstance(app.screen, ApprovalModal))
        await pilot.pause()
        assert re.search(r"time left 0:0[0-2]", screen_text(app))
        assert await wait_until(pilot, lambda: app.engine_code is not None)
        await settle(pilot, app)
        assert isinstance(app.screen, MainScreen)
        approval = store.rows("approvals")[0]
        assert approval["status"] == "expired"  # the safe default: denied
        push = store.query("SELECT payload FROM events WHERE kind = 'push.result'")
        assert '"ok": false' in push[-1]["payload"]
        assert app.engine_code == EXIT_NOT_PUSHED
        assert store.latest_mission()["status"] == "not_pushed"
    store.close()


async def test_a_plan_approval_shows_the_plan_tree_not_a_patch(world) -> None:
    """The ``plan`` gate's text is the plan tree (``PlanTree.tree_text``): shown as it is."""
    tree = "├─ 1. Add a farewell  (app/bye.py)\n└─ 2. Add a welcome  (app/hi.py)  after 1"
    world.store.decide_approval(world.mission.pending_approval, True, by="cli")
    world.store.create_approval(mission_id=world.mission.mission_id, gate="plan",
                                title="plan for epoch 3: 2 units", diffstat="2 units",
                                diff=tree, timeout=300)
    app = world.app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        assert isinstance(app.screen, ApprovalModal)
        text = screen_text(app)
        assert "gate: plan" in text
        assert "├─ 1. Add a farewell  (app/bye.py)" in text
        assert "└─ 2. Add a welcome  (app/hi.py)  after 1" in text
