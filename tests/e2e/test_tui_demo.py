"""End to end: the Textual app hosts the real engine on the demo; the push gate is answered
with `y` in the approval modal, and pause from the keyboard reaches the real controller."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from engine.config import load_config
from engine.controller import Controller
from engine.demo import prepare_demo
from engine.store import Store
from mc_tui.app import MissionControlApp
from mc_tui.screens.approval_modal import ApprovalModal

pytestmark = [pytest.mark.slow, pytest.mark.anyio]


async def wait_for(pilot, predicate, timeout: float = 60.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await pilot.pause(0.05)
    return bool(predicate())


async def test_tui_runs_the_demo_and_approves_the_push_with_y(tmp_path: Path) -> None:
    config = load_config(prepare_demo(tmp_path / "demo"))
    store = Store(config.db_path())
    controller = Controller(config, store)
    controller.prepare()

    async def engine() -> int:
        return (await controller.run()).exit_code

    app = MissionControlApp(store, config=config, engine=engine, mission_id=controller.mission_id)
    async with app.run_test(size=(140, 45)) as pilot:
        # pause from the keyboard reaches the real engine through the commands table
        await pilot.press("p")
        assert await wait_for(pilot, lambda: store.latest_mission()["status"] == "paused", 20)
        await pilot.press("p")
        assert await wait_for(pilot, lambda: store.latest_mission()["status"] == "running", 20)
        assert await wait_for(pilot, lambda: isinstance(app.screen, ApprovalModal))
        await pilot.press("y")
        assert await wait_for(pilot, lambda: app.engine_code is not None)
        assert app.engine_code == 0
        await pilot.press("q")
    mission = store.latest_mission()
    assert mission["status"] == "completed"
    assert store.rows("approvals")[0]["decided_by"] == "tui"
    leaves = [u for u in store.units(mission["id"]) if u["is_leaf"]]
    assert len(leaves) >= 6 and all(u["status"] == "merged" for u in leaves)
