"""Scripted-mission scaffolding for the benchmarks that run whole missions with the real engine
(``bench_learning``, ``bench_speculation``): the target repository, the cassette's fixed
entries, the config and one mission's run.

:func:`make_repo` builds ``root/repo`` (``app/`` and ``tests/`` packages plus ``files``,
committed on ``main``); :data:`CHECKS` is the ambition ("fine") and objective ("met") entries;
:func:`reflection` a reflection entry; :func:`write_config` writes
``root/mission-control.toml`` for the scripted backend reading ``root/cassette.toml``;
:func:`run_mission` prepares and runs one mission (-> :class:`MissionRun`); :func:`merged_units`
counts its merged leaf units.
"""

from __future__ import annotations

import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import anyio

from benchmarks._bench import git
from engine.config import load_config
from engine.controller import Controller
from engine.store import Store

CHECKS = '''
[[interaction]]
role = "ambition"
actions = [{ type = "text", text = '{"score": 8, "feedback": "fine"}' }]

[[interaction]]
role = "objective_check"
actions = [{ type = "text", text = '{"met": true, "feedback": "done"}' }]
'''


def reflection(text: str) -> str:
    """The reflection entry: ``text`` as the reflection, no lessons."""
    return f'''
[[interaction]]
role = "reflection"
actions = [{{ type = "text", text = '{{"reflection": "{text}", "lessons": []}}' }}]
'''


def make_repo(root: Path, files: dict[str, str] | None = None) -> Path:
    """``root/repo``: empty ``app`` and ``tests`` packages, then ``files`` (relative path ->
    text; may replace an ``__init__.py``), one commit on ``main``."""
    repo = root / "repo"
    (repo / "app").mkdir(parents=True)
    (repo / "tests").mkdir()
    (repo / "app" / "__init__.py").write_text("")
    (repo / "tests" / "__init__.py").write_text("")
    for path, text in (files or {}).items():
        (repo / path).write_text(text)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "initial")
    return repo


def write_config(root: Path, *, name: str, objective: str, workers: int, max_rounds: int,
                 fixup_max_attempts: int, extra: str = "") -> Path:
    """``root/mission-control.toml``: unittest verification, one fixup candidate, no review
    gate or HITL, the scripted backend; ``extra`` TOML tables are appended."""
    text = textwrap.dedent(f"""
    [target]
    name = "{name}"
    path = "repo"
    branch = "main"
    objective = "{objective}"
    [target.verification]
    command = "{sys.executable} -m unittest discover -s tests -t ."
    timeout = 60
    [scheduler]
    session_timeout = 60
    [scheduler.parallel]
    num_workers = {workers}
    [rounds]
    max_rounds = {max_rounds}
    [review]
    gate_completion = false
    [hitl]
    enabled = false
    [green_branch]
    fixup_candidates = 1
    fixup_max_attempts = {fixup_max_attempts}
    [agent]
    backend = "scripted"
    cassette = "cassette.toml"
    """) + extra
    path = root / "mission-control.toml"
    path.write_text(text)
    return path


@dataclass
class MissionRun:
    """One finished mission: its ``store`` (still open: the caller closes it), its
    ``mission_id`` and ``seconds`` the run took (after prepare)."""

    store: Store
    mission_id: int
    seconds: float


def run_mission(config_path: Path) -> MissionRun:
    """Load the config, prepare the real controller and run the mission to its end."""
    config = load_config(config_path)
    store = Store(config.state_dir() / "mission.db")
    controller = Controller(config, store)
    controller.prepare()
    started = time.perf_counter()
    outcome = anyio.run(controller.run)
    return MissionRun(store, outcome.mission_id, time.perf_counter() - started)


def merged_units(store: Store, mission_id: int) -> int:
    """Leaf units of the mission that were merged."""
    return store.query(
        "SELECT COUNT(*) AS n FROM units WHERE mission_id = ? AND is_leaf = 1 "
        "AND status = 'merged'", (mission_id,))[0]["n"]
