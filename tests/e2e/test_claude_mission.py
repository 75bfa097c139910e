"""A whole mission through the real Claude Code backend, against the protocol double."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from engine.store import Store
from tests.e2e.conftest import git, run_mc, write_config

pytestmark = pytest.mark.slow

FAKES = Path(__file__).resolve().parents[1] / "fakes"

# Agents only see an allowlisted environment: the fake's controls must be passed on explicitly.
PASSTHROUGH = (
    '[agent]\nenv_passthrough = ["FAKE_CLAUDE_SCRIPT", "FAKE_CLAUDE_SCENARIO"]\n'
    "[review]\ngate_completion = true\n"
)

PLAN = {
    "rationale": "two small units",
    "units": [
        {"title": "Add a farewell", "description": "app/bye.py with bye()",
         "files_hint": ["app/bye.py"], "acceptance_criteria": ["bye() returns 'bye'"], "leaf": True},
        {"title": "Add a shout", "description": "app/shout.py with shout()",
         "files_hint": ["app/shout.py"], "acceptance_criteria": ["shout('a') == 'A!'"], "leaf": True},
    ],
}


def script(tmp_path: Path) -> Path:
    rules = [
        {"match": "You are the planner", "env": {
            "FAKE_CLAUDE_RESULT": json.dumps(PLAN), "FAKE_CLAUDE_LOG": str(tmp_path / "planner.json")}},
        {"match": "You review plans", "env": {"FAKE_CLAUDE_RESULT": '{"score": 8, "feedback": "good"}'}},
        {"match": "You are the code reviewer", "env": {
            "FAKE_CLAUDE_RESULT": '{"alignment": 9, "approach": 8, "tests": 7, "feedback": "fine"}'}},
        {"match": "You verify objectives", "env": {
            "FAKE_CLAUDE_RESULT": '{"met": true, "confidence": 0.9, "feedback": "both merged"}'}},
        {"match": "title: Add a farewell|Add a farewell", "env": {
            "FAKE_CLAUDE_SCENARIO": "thinking",
            "FAKE_CLAUDE_EDITS": [{"path": "app/bye.py", "content": "def bye():\n    return 'bye'\n"}],
            "FAKE_CLAUDE_COMMIT": "Add bye()"}},
        {"match": "Add a shout", "env": {
            "FAKE_CLAUDE_EDITS": [{"path": "app/shout.py", "content": "def shout(s):\n    return s.upper() + '!'\n"}],
            "FAKE_CLAUDE_MARKER": "none"}},  # no marker, uncommitted: mc commits and uses git facts
    ]
    path = tmp_path / "script.json"
    path.write_text(json.dumps(rules))
    return path


def old_pool_with_work(repo: Path) -> Path:
    """A pool of an earlier version (<git dir>/mc/pool) whose slot holds an agent's
    uncommitted work on a unit branch, as a kill would leave it."""
    old = repo / ".git" / "mc" / "pool" / "slot-0"
    git(repo, "worktree", "add", "-q", "-b", "mc/unit/old-1", str(old))
    (old / "app" / "wip.py").write_text("WIP = True\n")
    return old


def test_mission_through_the_claude_backend(target: Path) -> None:
    config = write_config(target, "", PASSTHROUGH, backend="claude")
    old_slot = old_pool_with_work(target / "repo")
    env = {
        "PATH": f"{FAKES}{os.pathsep}{os.environ['PATH']}",
        "FAKE_CLAUDE_SCRIPT": str(script(target)),
        "ANTHROPIC_API_KEY": "sk-test-secret-value-123",
    }
    result = run_mc("mission", "--config", str(config), "--no-ui", env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    store = Store(target / "repo" / ".git" / "mc" / "mission.db")
    mission = store.latest_mission()
    assert mission["status"] == "completed"
    units = store.units(mission["id"])
    assert sorted(u["status"] for u in units) == ["merged", "merged"]
    # real costs from the result lines' total_cost_usd, per model, not estimated
    costs = store.query("SELECT role, model, usd, estimated FROM costs")
    assert costs and all(c["usd"] > 0 and not c["estimated"] for c in costs)
    assert {c["role"] for c in costs} >= {"planner", "ambition", "worker", "reviewer", "objective_check"}
    attempts = store.rows("attempts", "role = 'worker'")
    assert all(a["session_id"] and a["turns"] >= 1 and a["input_tokens"] > 0 for a in attempts)
    # live agent events were recorded (thinking, tool use, tool results)
    types = {json.loads(r["payload"])["type"] for r in store.query(
        "SELECT payload FROM events WHERE kind = 'agent.event'")}
    assert {"thinking", "tool_use", "tool_result", "text"} <= types
    repo = target / "repo"
    files = git(repo, "ls-tree", "-r", "--name-only", "mc/green").split()
    assert "app/bye.py" in files and "app/shout.py" in files
    # the planner call: role instructions as --append-system-prompt, read-only, prompt on stdin
    call = json.loads((target / "planner.json").read_text())
    argv = call["argv"]
    assert argv[argv.index("--append-system-prompt") + 1].startswith("You are Mission Control's planner")
    assert argv[argv.index("--permission-mode") + 1] == "plan"
    assert "Make greetings friendlier" in call["stdin"]
    assert not any("Make greetings friendlier" in a for a in argv)
    # the old pool under .git was moved at start-up, the agent's work saved on its branch
    notes = [e.payload.get("message", "") for e in store.events_after(0) if e.kind == "log"]
    assert any("moved the worktree pool from" in n for n in notes), notes
    assert not old_slot.exists() and ".git/mc/pool" not in git(repo, "worktree", "list")
    assert git(repo, "show", "mc/unit/old-1:app/wip.py") == "WIP = True"
    assert git(repo, "status", "--porcelain") == ""  # the user's checkout untouched
    # the API key is never written to the store
    store.close()
    raw = b"".join(p.read_bytes() for p in (repo / ".git" / "mc").glob("mission.db*"))
    assert b"sk-test-secret-value-123" not in raw


def test_auth_failure_stops_the_mission_with_a_clear_message(target: Path) -> None:
    config = write_config(target, "", PASSTHROUGH, backend="claude")
    env = {"PATH": f"{FAKES}{os.pathsep}{os.environ['PATH']}", "FAKE_CLAUDE_SCENARIO": "auth"}
    result = run_mc("mission", "--config", str(config), "--no-ui", env=env)
    assert result.returncode == 1
    mission = Store(target / "repo" / ".git" / "mc" / "mission.db").latest_mission()
    assert mission["status"] == "failed"
    assert "auth" in mission["outcome"].lower() or "api key" in mission["outcome"].lower()


def test_a_denied_worker_is_reported_as_denied_everywhere(target: Path) -> None:
    """A worker whose only step is refused by the CLI: the unit fails as `denied` with the
    refused call named in `mc status` and `mc report`, never as "no changes"."""
    one_unit = {"rationale": "one", "units": [PLAN["units"][0]]}
    rules = [
        {"match": "You are the planner", "env": {"FAKE_CLAUDE_RESULT": json.dumps(one_unit)}},
        {"match": "You review plans", "env": {"FAKE_CLAUDE_RESULT": '{"score": 8, "feedback": "ok"}'}},
        {"match": "You verify objectives", "env": {
            "FAKE_CLAUDE_RESULT": '{"met": false, "confidence": 0.9, "feedback": "nothing merged"}'}},
        {"match": "Add a farewell", "env": {"FAKE_CLAUDE_BASH": ["git push origin HEAD"]}},
    ]
    (target / "script.json").write_text(json.dumps(rules))
    config = write_config(target, "", PASSTHROUGH.replace('"FAKE_CLAUDE_SCENARIO"', '"FAKE_CLAUDE_*"')
                          + "[rounds]\nmax_rounds = 1\n", backend="claude")
    env = {"PATH": f"{FAKES}{os.pathsep}{os.environ['PATH']}",
           "FAKE_CLAUDE_SCRIPT": str(target / "script.json")}
    result = run_mc("mission", "--config", str(config), "--no-ui", env=env)
    assert result.returncode == 1
    denied = "agent was denied: Bash(git push origin HEAD)"
    status = run_mc("status", "--config", str(config), env=env)
    assert denied in status.stdout and "no changes" not in status.stdout, status.stdout
    run_mc("report", "--config", str(config), "-o", str(target / "report.json"), env=env)
    report = json.loads((target / "report.json").read_text())
    (unit,) = [u for u in report["units"] if u["title"] == "Add a farewell"]
    assert unit["status"] == "failed" and unit["failure_reason"] == "denied"
    assert denied in unit["reason"]
    assert report["denials"] and report["denials"][0]["denials"] == ["Bash(git push origin HEAD)"]
