"""`mc mission --chain` takes the next objective from the backlog and closes the item; with
`[discovery] enabled` each completed mission feeds the backlog."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.store import Store
from tests.e2e.conftest import (
    AMBITION_OK,
    OBJECTIVE_MET,
    plan_entry,
    run_mc,
    worker_entry,
    write_config,
)

pytestmark = pytest.mark.slow


def test_chain_takes_the_backlog_item_and_closes_it(target: Path) -> None:
    backlog = target / "backlog.md"
    backlog.write_text("- [ ] Add a command line entry point | track=feature impact=4 effort=2\n"
                       "- [ ] Polish the docs | impact=1 effort=5\n")
    cassette = (
        # first: the discovery prompt quotes the objective, which the plan entries match
        '''
[[interaction]]
role = "planner"
match = "discovery analyst"
actions = [{ type = "text", text = '{"items": [{"title": "Test the CLI", "track": "tests", "impact": 3, "effort": 1, "evidence": "app/cli.py:1 has no test"}]}' }]
'''
        + plan_entry("Add a farewell", "app/bye.py", "times = 1")
        + plan_entry("Add a CLI", "app/cli.py", 'match = "Add a command line"')
        + AMBITION_OK + OBJECTIVE_MET
        # the strategist only answers when it was shown the backlog, best item first
        + '''
[[interaction]]
role = "strategist"
times = 1
match = '#1 \\[feature\\] Add a command line entry point \\(score 2\\.00.*\\n- #2 '
actions = [{ type = "text", text = '{"next_objective": "Add a command line entry point", "rationale": "top of the backlog", "backlog_id": 1}' }]
'''
        + '''
[[interaction]]
role = "strategist"
actions = [{ type = "text", text = '{"next_objective": "", "rationale": "stop"}' }]
'''
        + worker_entry("Add a farewell", "app/bye.py", "def bye():\\n    return 'bye'\\n")
        + worker_entry("Add a CLI", "app/cli.py", "print('hi')\\n")
    )
    config = write_config(target, cassette, '[discovery]\nenabled = true\ntracks = ["tests"]\n')
    imported = run_mc("priority", "import", str(backlog), "--config", str(config))
    assert imported.returncode == 0, imported.stderr
    result = run_mc("mission", "--config", str(config), "--no-ui", "--chain")
    assert result.returncode == 0, result.stdout + result.stderr
    store = Store(target / "repo" / ".git" / "mc" / "mission.db")
    missions = store.query("SELECT * FROM missions ORDER BY id")
    assert [m["objective"] for m in missions][1] == "Add a command line entry point"
    items = {r["id"]: r for r in store.rows("backlog")}
    assert items[1]["state"] == "done" and items[1]["mission_id"] == missions[1]["id"]
    assert items[2]["state"] == "open"
    # discovery ran after each completed mission: the analyst's item is in, once
    assert [r["title"] for r in items.values()].count("Test the CLI") == 1
    finished = [json.loads(r["payload"]) for r in store.query(
        "SELECT payload FROM events WHERE kind = 'discovery.finished' ORDER BY id")]
    assert len(finished) == len(missions) and finished[0]["added"]
