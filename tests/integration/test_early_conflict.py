"""A unit whose finished branch conflicts with ``mc/green`` goes to fixup when its agent is
done, not after its precheck, review and a wait in the merge queue (engine/dispatch.py:
conflicts_on_green). Real repo, real mission, scripted agents."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anyio

from engine.config import load_config
from engine.controller import Controller
from engine.store import Store
from tests.e2e.conftest import (
    AMBITION_OK,
    OBJECTIVE_MET,
    make_target,
    plan_of,
    worker_entry,
    write_config,
)

FIXUP = '''
[[interaction]]
role = "fixup"
actions = [
  { type = "write", path = "app/shared.py", content = "A = 1\\nB = 2\\n" },
  { type = "commit", message = "Keep both" },
]
'''


def cassette(farewell: str = "A = 1\\n", shout: str = "B = 2\\n") -> str:
    # both write app/shared.py (neither declared it: no dependency edge); the shout's agent
    # starts before the farewell merges and ends after it
    return (plan_of(("Add a farewell", "app/bye.py"), ("Add a shout", "app/shout.py"))
            + AMBITION_OK + OBJECTIVE_MET
            + worker_entry("Add a farewell", "app/shared.py", farewell, sleep=0.3)
            + worker_entry("Add a shout", "app/shared.py", shout, sleep=4.0)
            + FIXUP)


def test_a_branch_conflicting_with_green_goes_to_fixup_when_its_agent_is_done(
    tmp_path: Path,
) -> None:
    make_target(tmp_path)
    slow = f"sleep 1; {sys.executable} -m unittest discover -s tests -t ."
    config = load_config(write_config(
        tmp_path, cassette(),
        f'[target.verification]\ncommand = "{slow}"\nprecheck = true\n'
        "[scheduler.parallel]\nnum_workers = 1\n"
        "[green_branch]\nfixup_candidates = 1\nfixup_max_attempts = 1\n"))
    store = Store(config.db_path())
    outcome = anyio.run(Controller(config, store).run)
    assert outcome.status == "completed", outcome.reason
    units = {u["title"]: u for u in store.rows("units", "is_leaf = 1")}
    assert {t: u["status"] for t, u in units.items()} == {
        "Add a farewell": "merged", "Add a shout": "merged"}
    shout = units["Add a shout"]["id"]
    moves = [json.loads(r["payload"]) for r in store.query(
        "SELECT payload FROM events WHERE kind = 'unit.status' AND unit_id = ? ORDER BY id",
        (shout,))]
    to_fixup = [m for m in moves if m["to"] == "fixup"]
    assert len(to_fixup) == 1 and to_fixup[0]["from"] == "running", moves
    assert "conflict in app/shared.py with mc/green" in to_fixup[0]["reason"]
    # no precheck of the conflicting head, and it never reached the queue
    checked = store.query("SELECT 1 FROM events WHERE kind = 'unit.prechecked' AND unit_id = ?",
                          (shout,))
    assert not checked
    assert not store.rows("merges", "status = 'conflict'")
    assert len(store.rows("merges", "unit_id = ?", (shout,))) == 1  # the repaired branch
    store.close()


def test_with_the_review_gate_the_conflict_is_checked_after_the_review(tmp_path: Path) -> None:
    # The fixup's winner passes the fixup gate, not the review: the unit's own work is
    # reviewed first (as when the queue finds the conflict), then it goes to fixup.
    make_target(tmp_path)
    review = '''
[[interaction]]
role = "reviewer"
actions = [{ type = "text", text = '{"alignment": 9, "approach": 8, "tests": 8, "feedback": "good"}' }]
'''
    slow = f"sleep 1; {sys.executable} -m unittest discover -s tests -t ."
    config = load_config(write_config(
        tmp_path, cassette() + review,
        f'[target.verification]\ncommand = "{slow}"\n'
        "[review]\ngate_completion = true\n"
        "[scheduler.parallel]\nnum_workers = 1\n"
        "[green_branch]\nfixup_candidates = 1\nfixup_max_attempts = 1\n"))
    store = Store(config.db_path())
    outcome = anyio.run(Controller(config, store).run)
    assert outcome.status == "completed", outcome.reason
    shout = store.rows("units", "title = 'Add a shout'")[0]
    assert shout["status"] == "merged"
    moves = [(m["from"], m["to"]) for m in (json.loads(r["payload"]) for r in store.query(
        "SELECT payload FROM events WHERE kind = 'unit.status' AND unit_id = ? ORDER BY id",
        (shout["id"],)))]
    assert ("running", "reviewing") in moves and ("reviewing", "fixup") in moves, moves
    assert store.query("SELECT 1 FROM events WHERE kind = 'review.scored' AND unit_id = ?",
                       (shout["id"],))
    assert not store.rows("merges", "status = 'conflict'")
    store.close()


def test_a_large_conflicting_change_is_still_put_to_the_large_merge_gate_once(
    tmp_path: Path,
) -> None:
    # A fixup's winner passes only the fixup gate: a large change sent to fixup before its
    # large-merge gate (here: it conflicts when its agent is done) is put to it there. Each
    # unit is asked once (found by a review of this change: the shout was never asked).
    make_target(tmp_path)
    two_lines = cassette("A = 1\\nC = 3\\n", "B = 2\\nD = 4\\n")
    slow = f"sleep 1; {sys.executable} -m unittest discover -s tests -t ."
    config = load_config(write_config(
        tmp_path, two_lines,
        f'[target.verification]\ncommand = "{slow}"\nprecheck = true\n'
        "[scheduler.parallel]\nnum_workers = 1\n"
        '[hitl]\nenabled = true\ngates = ["large_merge"]\nlarge_merge_lines = 1\n'
        "[green_branch]\nfixup_candidates = 1\nfixup_max_attempts = 1\n"))
    store = Store(config.db_path())
    outcome = anyio.run(Controller(config, store, auto_approve=True).run)
    assert outcome.status == "completed", outcome.reason
    units = {u["title"]: u for u in store.rows("units", "is_leaf = 1")}
    assert {t: u["status"] for t, u in units.items()} == {
        "Add a farewell": "merged", "Add a shout": "merged"}
    asked = {t: len(store.rows("approvals", "gate = 'large_merge' AND unit_id = ?", (u["id"],)))
             for t, u in units.items()}
    assert asked == {"Add a farewell": 1, "Add a shout": 1}, asked
    assert "conflict in app/shared.py" in (json.loads(store.query(
        "SELECT payload FROM events WHERE kind = 'unit.status' AND unit_id = ? AND "
        "json_extract(payload, '$.to') = 'fixup'", (units["Add a shout"]["id"],))[0]["payload"]
        )["reason"])
    store.close()
