"""Pilot tests with the engine hosted as a worker: pause/resume, stop, quit-confirm, exit codes."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest

from engine.store import Store
from mc_tui.app import EXIT_INTERRUPTED, MissionControlApp
from mc_tui.screens.confirm import ConfirmScreen
from mc_tui.screens.main import MainScreen
from mc_tui.synthetic import fake_engine
from mc_tui.widgets.plan_tree import PlanTree
from tests.tui.conftest import make_config, screen_text, settle

pytestmark = pytest.mark.anyio


async def wait_for(pilot, predicate, timeout: float = 15.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await pilot.pause(0.02)
    return bool(predicate())


@pytest.fixture
def host(tmp_path: Path):  # type: ignore[no-untyped-def]
    store = Store(tmp_path / "m.db")
    config = make_config(tmp_path)
    yield store, config
    store.close()


async def test_follows_the_mission_the_engine_creates(host) -> None:
    store, config = host
    app = MissionControlApp(store, config=config,
                            engine=fake_engine(store, config, units=3, approval_gate=False))
    async with app.run_test(size=(120, 40)) as pilot:
        assert await wait_for(pilot, lambda: app.engine_code is not None)
        await settle(pilot, app)
        mission = store.latest_mission()
        assert app.state.mission_id == mission["id"]
        assert mission["status"] == "completed" and app.engine_code == 0
        assert set(app.query_one(PlanTree)._unit_nodes) >= {"F1", "F2", "F3"}
        assert "engine finished (exit 0)" in screen_text(app)
        await pilot.press("q")  # engine done: no question
    assert app.return_code == 0


async def test_p_pauses_and_resumes_through_commands(host) -> None:
    store, config = host
    app = MissionControlApp(store, config=config,
                            engine=fake_engine(store, config, units=2, hold_open=True, approval_gate=False))
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        assert await wait_for(pilot, lambda: app.state.mission is not None)
        await settle(pilot, app)
        await pilot.press("p")
        mid = app.state.mission_id
        assert store.query("SELECT kind FROM commands WHERE mission_id = ?", (mid,))[-1]["kind"] == "pause"
        assert any(n.message == "pause requested" for n in app._notifications)
        assert await wait_for(pilot, lambda: store.get("missions", mid)["status"] == "paused")
        await settle(pilot, app)
        assert app.pause_wanted is None and "paused" in screen_text(app)
        await pilot.press("p")
        assert store.query("SELECT kind FROM commands WHERE mission_id = ?", (mid,))[-1]["kind"] == "resume"
        assert await wait_for(pilot, lambda: store.get("missions", mid)["status"] == "running")
        app.engine_worker.cancel()


async def test_s_asks_then_stops_gracefully(host) -> None:
    store, config = host
    app = MissionControlApp(store, config=config,
                            engine=fake_engine(store, config, units=1, hold_open=True, approval_gate=False))
    async with app.run_test(size=(120, 40)) as pilot:
        assert await wait_for(pilot, lambda: app.state.mission is not None)
        await settle(pilot, app)
        await pilot.press("s")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        assert isinstance(app.screen, MainScreen)
        assert not store.rows("commands", "kind = 'stop'")
        await pilot.press("s", "y")
        assert store.rows("commands", "kind = 'stop'")
        assert await wait_for(pilot, lambda: app.engine_code is not None)
        assert store.latest_mission()["status"] == "stopped"
        await settle(pilot, app)
        await pilot.press("p")  # a stopped mission cannot be paused: nothing is sent
        assert not store.rows("commands", "kind = 'pause'")


async def test_q_asks_while_running_and_exits_with_the_engine_code(host) -> None:
    store, config = host
    app = MissionControlApp(store, config=config,
                            engine=fake_engine(store, config, units=1, hold_open=True, approval_gate=False))
    async with app.run_test(size=(120, 40)) as pilot:
        assert await wait_for(pilot, lambda: app.state.mission is not None)
        await pilot.press("q")
        assert isinstance(app.screen, ConfirmScreen)
        assert "A mission is running" in screen_text(app)
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen) and app.engine_running()
        await pilot.press("q", "y")
        await wait_for(pilot, lambda: app.return_code is not None)
    assert app.return_code == 0  # the engine obeyed "stop" and returned 0
    assert store.latest_mission()["status"] == "stopped"


async def test_quit_interrupts_an_engine_that_does_not_stop(host) -> None:
    store, config = host

    async def stubborn() -> int:
        store.insert("missions", {"objective": "x", "status": "running", "started_at": time.time()},
                     event="mission.created")
        await anyio.sleep(60)
        return 0

    app = MissionControlApp(store, config=config, engine=stubborn)
    app.STOP_GRACE_S = 0.3
    async with app.run_test(size=(120, 40)) as pilot:
        assert await wait_for(pilot, lambda: app.state.mission is not None)
        await pilot.press("q", "y")
        await wait_for(pilot, lambda: app.return_code is not None)
    assert app.return_code == EXIT_INTERRUPTED
    assert store.rows("commands", "kind = 'stop'")


async def test_engine_crash_is_shown_and_becomes_exit_1(host) -> None:
    store, config = host

    async def broken() -> int:
        raise RuntimeError("controller exploded")

    app = MissionControlApp(store, config=config, engine=broken)
    async with app.run_test(size=(120, 40)) as pilot:
        assert await wait_for(pilot, lambda: app.engine_code is not None)
        await settle(pilot, app)
        assert "engine error: RuntimeError: controller exploded" in screen_text(app)
        await pilot.press("q")
    assert app.return_code == 1
