"""An interrupted mission unwinds at once: the observers' drain does not wait for pumps the
interruption already cancelled (it waited its full 10 s before; real repo, scripted agents)."""

from __future__ import annotations

import time
from pathlib import Path

import anyio

from engine.config import load_config
from engine.controller import Controller
from engine.plugins import DRAIN_SECONDS
from engine.store import Store
from tests.e2e.conftest import AMBITION_OK, OBJECTIVE_MET, make_target, write_config

CASSETTE = AMBITION_OK + OBJECTIVE_MET + '''
[[interaction]]
role = "planner"
actions = [{ type = "text", text = '{"units": [{"title": "Take a while", "files_hint": ["app/slow.py"], "acceptance_criteria": ["ok"]}]}' }]

[[interaction]]
role = "worker"
actions = [{ type = "sleep", seconds = 60 }]
'''


def test_an_interrupted_mission_does_not_wait_for_cancelled_observers(tmp_path: Path) -> None:
    make_target(tmp_path)
    config = load_config(write_config(tmp_path, CASSETTE))
    store = Store(config.db_path())
    controller = Controller(config, store)
    assert controller.plugins.observers()  # the built-in plugins observe the mission
    ended: list[float] = []

    async def interrupt() -> None:
        with anyio.move_on_after(3):
            await controller.run()
        ended.append(time.monotonic())

    started = time.monotonic()
    anyio.run(interrupt)
    assert ended[0] - started < 3 + DRAIN_SECONDS / 2
    mission = store.get("missions", controller.mission_id)
    assert mission["status"] == "interrupted"
    store.close()
