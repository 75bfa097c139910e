"""A whole mission through the real Claude Code CLI against the scripted model server.

The ready-made script (:func:`tests.support.scripts.small_mission_rules`) answers the
planner, ambition, workers (Write, Bash the tests, result marker), fixups and the objective
check; the pool is set outside ``.git/`` (Claude Code refuses edits under any ``.git/``).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from engine.store import Store
from tests.e2e.conftest import run_mc, write_config
from tests.support.model_server import ModelServer
from tests.support.real_clis import claude_env
from tests.support.scripts import MissionUnit, small_mission_rules

pytestmark = pytest.mark.slow

UNITS = [
    MissionUnit("Add a farewell", {"app/bye.py": "def bye():\n    return 'bye'\n"}),
    MissionUnit("Add a shout", {"app/shout.py": "def shout(s):\n    return s.upper() + '!'\n"}),
]


def test_mission_through_the_real_claude_code(claude_cli: str, target: Path) -> None:
    root = target
    extra = (f'[scheduler.parallel]\npool_dir = "{root / "pool"}"\n'
             '[agent]\nallowed_tools = ["Bash(python:*)"]\n')
    config = write_config(root, "", extra, backend="claude")
    rules = small_mission_rules(UNITS, test_command="python -m unittest discover -s tests -t .")
    with ModelServer(rules) as server:
        env = claude_env(server.url, root / "home", extra={"CLAUDE_CODE_MAX_RETRIES": "2"})
        env["PATH"] = f"{Path(claude_cli).parent}{os.pathsep}{env['PATH']}"
        result = run_mc("mission", "--config", str(config), "--no-ui", env=env, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    store = Store(root / "repo" / ".git" / "mc" / "mission.db")
    mission = store.latest_mission()
    assert mission["status"] == "completed"
    assert sorted(u["status"] for u in store.units(mission["id"])) == ["merged", "merged"]
    costs = store.query("SELECT role, usd, estimated FROM costs")
    assert all(c["usd"] > 0 and not c["estimated"] for c in costs)  # the CLI's total_cost_usd
    assert {c["role"] for c in costs} >= {"planner", "ambition", "worker", "objective_check"}
    green = {line.split("\t")[-1] for line in subprocess.run(
        ["git", "-C", str(root / "repo"), "ls-tree", "-r", "mc/green"],
        capture_output=True, text=True, check=True).stdout.splitlines()}
    assert {"app/bye.py", "app/shout.py"} <= green
    rules_hit = [r.rule for r in server.model_requests()]
    assert rules_hit[:2] == ["planner", "ambition"] and rules_hit[-1] == "objective"
    assert rules_hit.count("worker") >= 6  # two workers: Write, Bash, finish each
