"""A red baseline is not blamed on the units; must_pass stops at once; flaky tests are recorded.

Real temp repositories, the real `mc` process, scripted agents. The target's suite is run by
``python -m unittest`` (its text output is read for the failing tests).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from engine.store import Store
from tests.e2e.conftest import (
    AMBITION_OK,
    OBJECTIVE_MET,
    git,
    run_mc,
    worker_entry,
    write_config,
)

pytestmark = pytest.mark.slow

PLAN_TWO = '''
[[interaction]]
role = "planner"
actions = [{ type = "text", text = '{"units": [{"title": "Add a farewell", "files_hint": ["app/bye.py"], "acceptance_criteria": ["ok"]}, {"title": "Add a shout", "files_hint": ["app/shout.py"], "acceptance_criteria": ["ok"]}]}' }]
'''
TWO_WORKERS = (
    worker_entry("Add a farewell", "app/bye.py", "def bye():\\n    return 'bye'\\n")
    + worker_entry("Add a shout", "app/shout.py", "def shout():\\n    return 'HEY'\\n")
)
FEW_FIXUPS = "[green_branch]\nfixup_candidates = 1\nfixup_max_attempts = 1\n"


def store_of(root: Path) -> Store:
    return Store(root / "repo" / ".git" / "mc" / "mission.db")


def kinds(store: Store, kind: str) -> list[dict]:
    return [json.loads(r["payload"]) for r in store.query(
        "SELECT payload FROM events WHERE kind = ? ORDER BY id", (kind,))]


def break_baseline(root: Path) -> None:
    """A test that fails before any change (a service that is not there)."""
    repo = root / "repo"
    (repo / "tests" / "test_service.py").write_text(
        "import unittest\n\n\nclass ServiceTest(unittest.TestCase):\n"
        "    def test_service_is_up(self):\n        self.fail('the service is not running')\n"
    )
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "a test that needs a service")


def test_a_red_baseline_is_reported_once_and_not_blamed(target: Path) -> None:
    break_baseline(target)
    config = write_config(target, PLAN_TWO + AMBITION_OK + OBJECTIVE_MET + TWO_WORKERS, FEW_FIXUPS)
    result = run_mc("mission", "--config", str(config), "--no-ui")
    assert result.returncode == 0, result.stdout[-3000:]
    store = store_of(target)
    assert {u["title"]: u["status"] for u in store.units(1)} == {
        "Add a farewell": "merged", "Add a shout": "merged"}
    assert kinds(store, "fixup.started") == []  # nothing paid for a failure that was there
    baseline = kinds(store, "baseline.recorded")
    assert len(baseline) == 1
    assert baseline[0]["status"] == "failed"
    assert baseline[0]["failing"] == ["tests.test_service.ServiceTest.test_service_is_up"]
    files = git(target / "repo", "ls-tree", "-r", "--name-only", "mc/green").split()
    assert {"app/bye.py", "app/shout.py"} <= set(files)
    status = run_mc("status", "--config", str(config))
    assert "baseline" in status.stdout and "test_service_is_up" in status.stdout, status.stdout
    report = target / "report.json"
    run_mc("report", "--config", str(config), "-o", str(report))
    data = json.loads(report.read_text())
    assert data["baseline"]["status"] == "failed"
    assert data["baseline"]["failing_tests"] == ["tests.test_service.ServiceTest.test_service_is_up"]


def test_must_pass_stops_before_any_agent_runs(target: Path) -> None:
    break_baseline(target)
    config = write_config(target, PLAN_TWO + AMBITION_OK + OBJECTIVE_MET + TWO_WORKERS,
                          '[target.verification]\nbaseline = "must_pass"\n')
    result = run_mc("mission", "--config", str(config), "--no-ui")
    assert result.returncode == 1, result.stdout[-3000:]
    assert "baseline" in result.stdout and "must_pass" in result.stdout
    store = store_of(target)
    mission = store.latest_mission()
    assert mission["status"] == "failed"
    assert "test_service_is_up" in mission["outcome"]
    assert store.rows("attempts") == [] and store.rows("epochs") == []


def test_a_unit_adding_a_new_failure_is_still_blamed(target: Path) -> None:
    break_baseline(target)
    cassette = (
        PLAN_TWO + AMBITION_OK + OBJECTIVE_MET
        + worker_entry("Add a farewell", "app/bye.py", "def bye():\\n    return 'bye'\\n")
        # this one breaks greet(): test_greet fails on top of the baseline's failure
        + worker_entry("Add a shout", "app/greet.py",
                       "def greet(name):\\n    return 'HEY ' + name\\n")
        + '''
[[interaction]]
role = "fixup"
actions = [
  { type = "write", path = "app/greet.py", content = "def greet(name):\\n    return f'hello {name}'\\n" },
  { type = "write", path = "app/shout.py", content = "def shout():\\n    return 'HEY'\\n" },
  { type = "commit", message = "Restore greet, shout apart" },
]
'''
    )
    config = write_config(target, cassette, FEW_FIXUPS)
    result = run_mc("mission", "--config", str(config), "--no-ui")
    assert result.returncode == 0, result.stdout[-3000:]
    store = store_of(target)
    started = kinds(store, "fixup.started")
    assert len(started) == 1
    detail = started[0]["detail"]
    assert "test_greet" in detail
    failed = store.rows("merges", "status = 'failed'")
    assert len(failed) == 1 and "tests.test_greet.GreetTest.test_greet" in failed[0]["reason"]
    # the fixup candidate still fails the baseline's test, but nothing more: it is accepted
    assert {u["title"]: u["status"] for u in store.units(1)} == {
        "Add a farewell": "merged", "Add a shout": "merged"}


def test_a_flaky_test_is_recorded_not_blamed(target: Path) -> None:
    counter = target / "runs.txt"  # outside the repository
    repo = target / "repo"
    (repo / "tests" / "test_flaky.py").write_text(
        "import os\nimport unittest\n\n\nclass FlakyTest(unittest.TestCase):\n"
        "    def test_sometimes(self):\n"
        "        path = os.environ['FLAKY_COUNTER']\n"
        "        n = int(open(path).read() or 0) + 1 if os.path.exists(path) else 1\n"
        "        open(path, 'w').write(str(n))\n"
        "        self.assertNotEqual(n, 2, 'flaky: fails on the second run only')\n"
    )
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "a flaky test")
    config = write_config(
        target,
        PLAN_TWO.replace(', {"title": "Add a shout", "files_hint": ["app/shout.py"], '
                         '"acceptance_criteria": ["ok"]}', "")
        + AMBITION_OK + OBJECTIVE_MET + TWO_WORKERS,
        FEW_FIXUPS,
    )
    result = run_mc("mission", "--config", str(config), "--no-ui",
                    env={"FLAKY_COUNTER": str(counter)})
    assert result.returncode == 0, result.stdout[-3000:]
    store = store_of(target)
    assert [u["status"] for u in store.units(1)] == ["merged"]
    assert kinds(store, "fixup.started") == []
    assert store.rows("merges", "status = 'failed'") == []
    flaky = kinds(store, "verification.flaky")
    assert len(flaky) == 1 and flaky[0]["tests"] == ["tests.test_flaky.FlakyTest.test_sometimes"]
    report = target / "report.json"
    run_mc("report", "--config", str(config), "-o", str(report))
    assert json.loads(report.read_text())["flaky_tests"] == [
        "tests.test_flaky.FlakyTest.test_sometimes"]


def test_the_baseline_runs_beside_planning_and_agents_and_judges_every_verification(
    target: Path,
) -> None:
    # A slow suite (3 s) no longer holds the planner or the agents up: the plan is recorded
    # and workers start while the baseline verification runs; but no verification is judged
    # before it is recorded (a failure already there is never blamed on a unit).
    slow = f"sleep 3 && {sys.executable} -m unittest discover -s tests -t ."
    config = write_config(target, PLAN_TWO + AMBITION_OK + OBJECTIVE_MET + TWO_WORKERS,
                          f'[target.verification]\ncommand = "{slow}"\nprecheck = true\nprecheck_when_queue_idle = true\n')
    result = run_mc("mission", "--config", str(config), "--no-ui")
    assert result.returncode == 0, result.stdout[-3000:]
    store = store_of(target)

    def first(sql: str) -> float:
        return float(store.query(sql)[0]["ts"])

    baseline = first("SELECT ts FROM events WHERE kind = 'baseline.recorded'")
    started = first("SELECT ts FROM events WHERE kind = 'verification.started' ORDER BY id")
    planned = first("SELECT ts FROM events WHERE kind = 'unit.created' ORDER BY id")
    worker = first("SELECT started_at AS ts FROM attempts WHERE role = 'worker' "
                   "ORDER BY started_at")
    judged = first("SELECT ts FROM events WHERE kind IN ('unit.prechecked', 'merge.status') "
                   "ORDER BY id")
    assert started < planned < worker < baseline, (started, planned, worker, baseline)
    assert judged > baseline  # judged only once it was recorded


def test_a_limit_reached_while_the_baseline_runs_stops_the_mission_without_waiting_for_it(
    target: Path,
) -> None:
    # the wall time runs out during a 6 s baseline: the mission stops then, not once the
    # suite is done; nothing the agents made was judged or merged
    slow = f"sleep 6 && {sys.executable} -m unittest discover -s tests -t ."
    config = write_config(target, PLAN_TWO + AMBITION_OK + OBJECTIVE_MET + TWO_WORKERS,
                          f'[target.verification]\ncommand = "{slow}"\n'
                          "[continuous]\nmax_wall_time_seconds = 1\n")
    result = run_mc("mission", "--config", str(config), "--no-ui")
    store = store_of(target)
    mission = store.latest_mission()
    assert mission["status"] == "stopped", (mission["status"], result.stdout[-2000:])
    assert mission["ended_at"] - mission["started_at"] < 5, mission  # not after the suite
    assert not kinds(store, "baseline.recorded")  # cancelled: a resumed run verifies again
    assert not store.rows("merges", "status = 'promoted'")  # nothing judged, nothing merged
