"""Fixtures for the TUI tests: the mission the snapshots show, recorded from the real pipeline
(``tests/support/recorded_world.py``); the frozen every-state mission of the pane tests
(``tests/support/tui_world.py``) in a real store with a real git repo; the live engine is
``tests/support/scripted_mission.py``."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from engine.config import MissionConfig
from engine.store import Store
from mc_tui.app import MissionControlApp
from tests.support.recorded_world import RECORDED_TS, world_copy
from tests.support.tui_world import BASE_TS, SyntheticMission, frozen_clock

FROZEN_NOW = BASE_TS + 600  # ten minutes into the synthetic mission
RECORDED_NOW = RECORDED_TS + 20  # twenty seconds into the recorded one (its heartbeat is fresh)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class World:
    store: Store
    config: MissionConfig
    mission: SyntheticMission | None  # None: a recorded world
    root: Path
    now: float = FROZEN_NOW

    def app(self, **kwargs: Any) -> MissionControlApp:
        kwargs.setdefault("attach", True)
        kwargs.setdefault("clock", frozen_clock(self.now))
        return MissionControlApp(self.store, config=self.config, **kwargs)


def make_config(root: Path, **ui: Any) -> MissionConfig:
    config = MissionConfig()
    config.target.path = root / "repo"
    config.target.name = "synthetic"
    config.target.objective = "Make the parser robust and the merge queue fast"
    config.ui.refresh_hz = 20
    for key, value in ui.items():
        setattr(config.ui, key, value)
    return config


def make_world(root: Path, *, pending_approval: bool = True, **ui: Any) -> World:
    store = Store(root / "mission.db")
    mission = SyntheticMission(store, repo=root / "repo", pending_approval=pending_approval)
    mission.write()
    return World(store, make_config(root, **ui), mission, root)


@pytest.fixture(scope="session")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the real pipeline's recording is made (once per session)."""
    return tmp_path_factory.mktemp("recorded")


def make_recorded_world(recordings: Path, root: Path, *, pending_approval: bool = False,
                        **ui: Any) -> World:
    """The real pipeline's mission (three chained units, scripted agents): waiting at the push
    gate with every unit merged (``pending_approval``), else ended (pushed, objective met)."""
    db = world_copy(recordings, root / "recorded", "pending" if pending_approval else "ended")
    config = make_config(root / "recorded", **ui)
    config.target.name = "scripted"
    config.target.objective = "Add the units"
    return World(Store(db), config, None, root / "recorded", RECORDED_NOW)


@pytest.fixture
def world(tmp_path: Path) -> World:
    """A synthetic mission with one pending approval."""
    w = make_world(tmp_path)
    yield w
    w.store.close()


@pytest.fixture
def calm_world(tmp_path: Path) -> World:
    """A synthetic mission with no pending approval (no modal pops up)."""
    w = make_world(tmp_path, pending_approval=False)
    yield w
    w.store.close()


def screen_text(app: MissionControlApp) -> str:
    """The current screen as plain text (what a user would read)."""
    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), force_terminal=True,
                      color_system="truecolor", record=True, legacy_windows=False)
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return console.export_text()


async def settle(pilot: Any, app: MissionControlApp, rounds: int = 1) -> None:
    """Let the reader catch up with the store and the clock apply it."""
    for _ in range(rounds):
        await pilot.pause()
        assert await app.caught_up(), "the event reader fell behind"
    await pilot.pause()


def renderable_text(renderable: Any, width: int = 120) -> str:
    """Plain text of a Rich renderable (e.g. a Static's content)."""
    console = Console(width=width, file=io.StringIO(), record=True, color_system=None)
    console.print(renderable)
    return console.export_text()
