"""The TUI's live engine for tests: the real pipeline with the scripted backend.

:func:`scripted_mission` makes a small real target (a git repo with unittest tests and a bare
``origin``), a cassette (one planner answer with ``units`` leaf units, one worker entry per
unit that really edits and commits, the ambition and objective checks) and a config, then
prepares the real controller on it. Its ``engine`` is what ``mc`` hands the app: a coroutine
factory that runs the mission and returns its exit code. Everything the dashboard then shows
was emitted by the engine itself, so the tests cannot drift from it.

Knobs: ``work_s`` makes each worker sleep first (a mission that stays running while a test
pauses or stops it), ``push_gate`` puts the ``push`` human gate in front of the push and
``approval_timeout`` is its ``[hitl] poll_timeout`` (expired = denied); ``workers`` is
``[scheduler.parallel] num_workers``; ``serial_queue`` chains the units (each after the one
before) without stacking them (each starts once the one before merged), merges one per batch
and keeps the worktree pool under ``root``: a run whose events come in the same order every
time (for a recording).
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from engine.config import MissionConfig, load_config
from engine.store import Store
from tests.support.target_repo import make_target


def cassette(units: int, *, work_s: float = 0.0, chain: bool = False) -> str:
    """Planner -> ``units`` (at most 5, the planner's limit per node) leaf units ("Unit 1"...), one worker per unit writing
    ``app/unit_<n>.py`` and committing; ambition ok; objective met. ``chain``: each unit
    depends on the one before (so one runs only when the previous one is merged)."""
    def after(n: int) -> str:
        return f', "dependencies": ["Unit {n - 1}"]' if chain and n > 1 else ""

    plan = ", ".join(
        f'{{"title": "Unit {n}", "description": "Add app/unit_{n}.py", '
        f'"files_hint": ["app/unit_{n}.py"], "acceptance_criteria": ["tests pass"], "leaf": true'
        f'{after(n)}}}'
        for n in range(1, units + 1)
    )
    out = [f'''
[[interaction]]
role = "planner"
cost_usd = 0.05
actions = [{{ type = "text", text = '{{"units": [{plan}]}}' }}]

[[interaction]]
role = "ambition"
actions = [{{ type = "text", text = '{{"score": 8, "feedback": "fine"}}' }}]

[[interaction]]
role = "objective_check"
actions = [{{ type = "text", text = '{{"met": true, "confidence": 0.9, "feedback": "done"}}' }}]
''']
    sleep = f'{{ type = "sleep", seconds = {work_s} }},' if work_s else ""
    for n in range(1, units + 1):
        out.append(f'''
[[interaction]]
role = "worker"
when = {{ unit_title = "Unit {n}" }}
cost_usd = 0.02
actions = [
  {sleep}
  {{ type = "text", text = "Adding app/unit_{n}.py" }},
  {{ type = "write", path = "app/unit_{n}.py", content = "def unit_{n}():\\n    return {n}\\n" }},
  {{ type = "commit", message = "Unit {n}" }},
]
''')
    return textwrap.dedent("".join(out))


def write_config(root: Path, *, units: int, work_s: float, push_gate: bool,
                 approval_timeout: float, workers: int = 2, serial_queue: bool = False) -> Path:
    (root / "cassette.toml").write_text(cassette(units, work_s=work_s, chain=serial_queue))
    gates = '["push"]' if push_gate else "[]"
    config = root / "mission-control.toml"
    config.write_text(textwrap.dedent(f"""
        [target]
        name = "scripted"
        path = "repo"
        branch = "main"
        objective = "Add the units"
        [target.verification]
        command = "{sys.executable} -m unittest discover -s tests -t ."
        timeout = 60
        precheck = false
        [scheduler]
        session_timeout = 30
        {"stacked_branches = false" if serial_queue else ""}
        [scheduler.parallel]
        num_workers = {workers}
        {f'pool_dir = "{root / "pool"}"' if serial_queue else ""}
        [review]
        gate_completion = false
        [green_branch]
        auto_push = true
        push_branch = "main"
        [hitl]
        enabled = {"true" if push_gate else "false"}
        gates = {gates}
        poll_timeout = {approval_timeout}
        [agent]
        backend = "scripted"
        cassette = "cassette.toml"
        [ui]
        refresh_hz = 20
        [merge_queue]
        batch_size = {1 if serial_queue else 4}
        """))
    return config


@dataclass
class ScriptedMission:
    """A prepared real mission: ``engine()`` runs it (-> exit code); ``store`` is its store."""

    config: MissionConfig
    store: Store
    engine: Callable[[], Awaitable[int]]
    mission_id: int | None
    root: Path


def scripted_mission(root: Path, *, units: int = 2, work_s: float = 0.0, push_gate: bool = False,
                     approval_timeout: float = 120.0, workers: int = 2,
                     serial_queue: bool = False) -> ScriptedMission:
    """Make the target and config under ``root`` and prepare the real controller on it."""
    from engine.controller import Controller, run_mission

    make_target(root, origin=True)
    config = load_config(write_config(root, units=units, work_s=work_s, push_gate=push_gate,
                                      approval_timeout=approval_timeout, workers=workers,
                                      serial_queue=serial_queue))
    store = Store(config.db_path())
    controller = Controller(config, store)
    controller.prepare()  # creates the mission, takes the lock (as `mc` does before the UI)

    async def engine() -> int:
        return (await run_mission(controller)).exit_code

    return ScriptedMission(config, store, engine, controller.mission_id, root)
