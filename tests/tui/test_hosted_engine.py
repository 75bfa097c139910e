"""Pilot tests with the engine hosted as a worker: pause/resume, stop, quit-confirm, exit codes.

The hosted engine is the real pipeline with the scripted backend (``tests/support/
scripted_mission.py``): real planning, worktrees, commits, merges and verification."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest

from engine.store import Store
from mc_tui.app import EXIT_INTERRUPTED, MissionControlApp
from mc_tui.screens.confirm import ConfirmScreen
from mc_tui.screens.main import MainScreen
from mc_tui.widgets.plan_tree import PlanTree
from tests.support.scripted_mission import ScriptedMission, scripted_mission
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


@pytest.fixture
def live(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A prepared real mission whose workers take a while: five units on two workers, so a
    pause or stop early on leaves work undispatched (a paused mission cannot finish)."""
    mission = scripted_mission(tmp_path, units=5, work_s=1.0)
    yield mission
    mission.store.close()


def app_for(mission: ScriptedMission) -> MissionControlApp:
    return MissionControlApp(mission.store, config=mission.config, engine=mission.engine)


async def test_follows_the_mission_the_engine_creates(tmp_path: Path) -> None:
    mission = scripted_mission(tmp_path, units=3)
    store = mission.store
    app = app_for(mission)
    async with app.run_test(size=(120, 40)) as pilot:
        assert await wait_for(pilot, lambda: app.engine_code is not None, 60)
        await settle(pilot, app)
        row = store.latest_mission()
        assert app.state.mission_id == row["id"]
        assert row["status"] == "completed" and app.engine_code == 0
        units = {u["id"] for u in store.units(row["id"])}
        assert len(units) == 3 and set(app.query_one(PlanTree)._unit_nodes) >= units
        assert "engine finished (exit 0)" in screen_text(app)
        await pilot.press("q")  # engine done: no question
    assert app.return_code == 0
    store.close()


async def test_p_pauses_and_resumes_through_commands(live) -> None:
    store = live.store
    app = app_for(live)
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        assert await wait_for(pilot, lambda: app.state.mission is not None)
        await settle(pilot, app)
        mid = app.state.mission_id
        undispatched = {"planned", "ready", "blocked"}
        assert any(u["status"] in undispatched for u in store.units(mid)) or not store.units(mid)
        await pilot.press("p")
        assert store.query("SELECT kind FROM commands WHERE mission_id = ? ORDER BY id", (mid,))[-1]["kind"] == "pause"
        assert any(n.message == "pause requested" for n in app._notifications)
        assert await wait_for(pilot, lambda: store.get("missions", mid)["status"] == "paused")
        await settle(pilot, app)
        assert app.pause_wanted is None and "paused" in screen_text(app)
        await pilot.press("p")
        assert store.query("SELECT kind FROM commands WHERE mission_id = ? ORDER BY id", (mid,))[-1]["kind"] == "resume"
        assert await wait_for(pilot, lambda: store.get("missions", mid)["status"] == "running")
        assert await wait_for(pilot, lambda: app.engine_code is not None, 60)
        assert app.engine_code == 0 and store.get("missions", mid)["status"] == "completed"


async def test_s_asks_then_stops_gracefully(live) -> None:
    store = live.store
    app = app_for(live)
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
        assert await wait_for(pilot, lambda: app.engine_code is not None, 60)
        assert store.latest_mission()["status"] == "stopped"
        assert app.engine_code == 1  # stopped before the objective: not a success
        await settle(pilot, app)
        await pilot.press("p")  # a stopped mission cannot be paused: nothing is sent
        assert not store.rows("commands", "kind = 'pause'")


async def test_q_asks_while_running_and_exits_with_the_engine_code(live) -> None:
    store = live.store
    app = app_for(live)
    # the real engine lets running agents finish and lands their work before it stops: on a
    # loaded machine that can take longer than the default grace (test_quit_interrupts...
    # covers an engine that does not stop in time)
    app.STOP_GRACE_S = 60
    async with app.run_test(size=(120, 40)) as pilot:
        assert await wait_for(pilot, lambda: app.state.mission is not None)
        await pilot.press("q")
        assert isinstance(app.screen, ConfirmScreen)
        assert "A mission is running" in screen_text(app)
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen) and app.engine_running()
        await pilot.press("q", "y")
        await wait_for(pilot, lambda: app.return_code is not None, 60)
    assert store.latest_mission()["status"] == "stopped"
    assert app.return_code == 1  # the engine obeyed "stop" in time and returned its code


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
