"""Every HITL gate on a scripted headless mission, decided through the CLI and the file channel.

Gates: ``plan`` (the plan tree before dispatch), ``large_merge`` (a diff over
``large_merge_lines``), ``fixup`` (a fixup winner before delivery), ``push``; and the timeout
(``poll_timeout``), whose safe default is deny.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.store import Store
from tests.e2e.conftest import (
    AMBITION_OK,
    OBJECTIVE_MET,
    git,
    plan_entry,
    run_mc,
    worker_entry,
    write_config,
)

pytestmark = pytest.mark.slow


def start(config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "mc_tui", "mission", "--config", str(config), "--no-ui"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
    )


def pending(db: Path, gate: str, proc: subprocess.Popen[str], *, after: int = 0,
            timeout: float = 60) -> dict:
    """The next pending approval of ``gate`` with an id above ``after``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if db.exists():
            rows = Store(db).query(
                "SELECT * FROM approvals WHERE status = 'pending' AND gate = ? AND id > ?",
                (gate, after))
            if rows:
                return rows[0]
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"mission ended first ({proc.returncode}):\n{out[-3000:]}{err[-3000:]}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"no pending {gate} approval")


def finish(proc: subprocess.Popen[str], timeout: float = 90) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-3000:] + err[-3000:]
    return out


def events(db: Path, kind: str) -> list[dict]:
    return [json.loads(r["payload"]) for r in Store(db).query(
        "SELECT payload FROM events WHERE kind = ? ORDER BY id", (kind,))]


def append(path: Path, line: str) -> None:
    with path.open("a") as f:
        f.write(line + "\n")


def db_of(target: Path) -> Path:
    return target / "repo" / ".git" / "mc" / "mission.db"


TWO_UNIT_PLAN = '''
[[interaction]]
role = "planner"
actions = [{ type = "text", text = '{"units": [{"title": "Add a farewell", "description": "d", "files_hint": ["app/bye.py"], "acceptance_criteria": ["tests pass"], "leaf": true}, {"title": "Add a welcome", "description": "d", "files_hint": ["app/hi.py"], "acceptance_criteria": ["tests pass"], "dependencies": ["Add a farewell"], "leaf": true}]}' }]
'''


def test_plan_gate_shows_the_tree_and_a_file_denial_replans(target: Path) -> None:
    answers = target / "answers.txt"
    config = write_config(
        target,
        TWO_UNIT_PLAN + AMBITION_OK + OBJECTIVE_MET
        + worker_entry("Add a farewell", "app/bye.py", "def bye():\\n    return 'bye'\\n")
        + worker_entry("Add a welcome", "app/hi.py", "def hi():\\n    return 'hi'\\n"),
        '[hitl]\nenabled = true\ngates = ["plan"]\npoll_timeout = 60\n'
        'approval_file = "answers.txt"\n',
    )
    db = db_of(target)
    proc = start(config)
    first = pending(db, "plan", proc)
    assert first["diff"].splitlines() == [
        "├─ 1. Add a farewell  (app/bye.py)",
        "└─ 2. Add a welcome  (app/hi.py)  after 1",
    ]
    assert first["diffstat"].startswith("2 units")
    assert not Store(db).units(1)  # nothing is dispatched (or even recorded) before approval
    append(answers, f"deny {first['id']} split it differently")
    second = pending(db, "plan", proc, after=first["id"])
    append(answers, json.dumps({"id": second["id"], "decision": "approve"}))
    out = finish(proc)
    assert "├─ 1. Add a farewell  (app/bye.py)" in out  # the tree, shown headless
    assert "└─ 2. Add a welcome  (app/hi.py)  after 1" in out
    decided = events(db, "approval.status")
    assert [(e["id"], e["to"], e.get("reason")) for e in decided] == [
        (first["id"], "denied", "split it differently"), (second["id"], "approved", None)]
    assert decided[0]["by"] == "file:answers.txt:1"
    assert f"approval #{first['id']} denied by file:answers.txt:1: split it differently" in out
    leaves = [u for u in Store(db).units(1) if u["is_leaf"]]
    assert sorted(u["status"] for u in leaves) == ["merged", "merged"]


def test_large_merge_gate_denied_in_the_file_fails_only_that_unit(target: Path) -> None:
    answers = target / "answers.txt"
    config = write_config(
        target,
        plan_entry("Add a farewell", "app/bye.py") + AMBITION_OK + OBJECTIVE_MET
        + worker_entry("Add a farewell", "app/bye.py",
                       "def bye():\\n    return 'bye'\\n\\n\\ndef ciao():\\n    return 'ciao'\\n"),
        '[hitl]\nenabled = true\ngates = ["large_merge"]\nlarge_merge_lines = 3\n'
        'poll_timeout = 60\napproval_file = "answers.txt"\n'
        '[rounds]\nmax_rounds = 1\n',
    )
    db = db_of(target)
    proc = start(config)
    approval = pending(db, "large_merge", proc)
    assert approval["unit_id"] and "app/bye.py" in approval["diffstat"]
    assert "+def ciao():" in approval["diff"]
    append(answers, "this is not a decision")
    append(answers, f"deny {approval['id']} too large to review")
    proc.communicate(timeout=90)
    unit = Store(db).get("units", approval["unit_id"])
    assert unit["status"] == "failed" and unit["reason"] == "large merge not approved"
    bad = events(db, "approval.malformed")
    assert [(b["line"], b["text"]) for b in bad] == [(1, "this is not a decision")]
    assert not git(target / "repo", "ls-tree", "mc/green", "app/bye.py")  # never merged


def test_a_small_merge_passes_the_large_merge_gate_without_asking(target: Path) -> None:
    config = write_config(
        target,
        plan_entry("Add a farewell", "app/bye.py") + AMBITION_OK + OBJECTIVE_MET
        + worker_entry("Add a farewell", "app/bye.py", "def bye():\\n    return 'bye'\\n"),
        '[hitl]\nenabled = true\ngates = ["large_merge"]\nlarge_merge_lines = 50\n',
    )
    result = run_mc("mission", "--config", str(config), "--no-ui")
    assert result.returncode == 0, result.stdout[-2000:]
    assert not Store(db_of(target)).rows("approvals")


BREAK_THEN_FIX = '''
[[interaction]]
role = "fixup"
actions = [
  { type = "write", path = "app/greet.py", content = "def greet(name):\\n    return f'hello {name}'\\n\\n\\ndef bye():\\n    return 'bye'\\n" },
  { type = "commit", message = "Keep greet, add bye" },
]
'''


def test_fixup_gate_holds_the_winner_until_approved_on_the_cli(target: Path) -> None:
    config = write_config(
        target,
        plan_entry("Add a farewell", "app/greet.py") + AMBITION_OK + OBJECTIVE_MET
        # the worker breaks the greeting: verification fails, N-of-M fixup repairs it
        + worker_entry("Add a farewell", "app/greet.py", "def bye():\\n    return 'bye'\\n")
        + BREAK_THEN_FIX,
        '[hitl]\nenabled = true\ngates = ["fixup"]\npoll_timeout = 60\n'
        '[green_branch]\nfixup_candidates = 1\n',
    )
    db = db_of(target)
    proc = start(config)
    approval = pending(db, "fixup", proc)
    assert approval["title"].startswith("fixup of Add a farewell: candidate 1")
    assert "app/greet.py" in approval["diffstat"]
    unit = Store(db).get("units", approval["unit_id"])
    assert unit["status"] == "fixup"  # held at the gate, not in the queue
    decided = run_mc("approve", str(approval["id"]), "--config", str(config))
    assert decided.returncode == 0, decided.stderr
    finish(proc)
    assert Store(db).get("units", approval["unit_id"])["status"] == "merged"
    assert "def bye" in git(target / "repo", "show", "mc/green:app/greet.py")


def test_fixup_gate_times_out_to_deny(target: Path) -> None:
    config = write_config(
        target,
        plan_entry("Add a farewell", "app/greet.py") + AMBITION_OK + OBJECTIVE_MET
        + worker_entry("Add a farewell", "app/greet.py", "def bye():\\n    return 'bye'\\n")
        + BREAK_THEN_FIX,
        '[hitl]\nenabled = true\ngates = ["fixup"]\npoll_timeout = 1\n'
        '[green_branch]\nfixup_candidates = 1\n[rounds]\nmax_rounds = 1\n',
    )
    db = db_of(target)
    run_mc("mission", "--config", str(config), "--no-ui")
    store = Store(db)
    approval = store.rows("approvals")[0]
    assert approval["gate"] == "fixup" and approval["status"] == "expired"
    unit = store.get("units", approval["unit_id"])
    assert unit["status"] == "failed" and unit["reason"] == "fixup not approved"
