"""Fault injection: `kill -9` of mc while a real agent process (and its grandchild) runs.

The agent is tests/fakes/claude in its `hang` scenario: it forks a grandchild and both
ignore SIGTERM, as a stuck CLI with a stuck Bash tool would. After the kill no process of
the agent's group may survive (its supervisor ends the group), and when the supervisor is
killed too, the resumed run ends what is left before it touches the worktree. Either way
the resumed mission completes the unit once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.agents.process import group_members
from engine.store import Store
from tests.e2e.conftest import git, make_target, run_mc, write_config

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
FAKES = ROOT / "tests" / "fakes"
CONFIG = (
    '[agent]\nenv_passthrough = ["FAKE_CLAUDE_SCRIPT"]\nkill_grace_seconds = 1.0\n'
    "[scheduler.parallel]\nnum_workers = 1\n"
)
PLAN = {"rationale": "one unit", "units": [
    {"title": "Add a farewell", "description": "app/bye.py with bye()", "files_hint": ["app/bye.py"],
     "acceptance_criteria": ["bye() returns 'bye'"], "leaf": True}]}
BYE = [{"path": "app/bye.py", "content": "def bye():\n    return 'bye'\n"}]


def write_script(path: Path, worker: dict[str, object]) -> None:
    rules = [
        {"match": "You are the planner", "env": {"FAKE_CLAUDE_RESULT": json.dumps(PLAN)}},
        {"match": "You review plans", "env": {"FAKE_CLAUDE_RESULT": '{"score": 8, "feedback": "good"}'}},
        {"match": "You are the code reviewer", "env": {
            "FAKE_CLAUDE_RESULT": '{"alignment": 9, "approach": 8, "tests": 7, "feedback": "fine"}'}},
        {"match": "You verify objectives", "env": {
            "FAKE_CLAUDE_RESULT": '{"met": true, "confidence": 0.9, "feedback": "merged"}'}},
        {"match": "Add a farewell", "env": worker},
    ]
    path.write_text(json.dumps(rules))


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] not in "ZX"


def wait_for(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def start_hung_mission(tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path, dict, dict[str, str]]:
    """mc running one worker that hangs with a grandchild; returns (mc, config, attempt, env)."""
    make_target(tmp_path)
    config = write_config(tmp_path, "", CONFIG, backend="claude")
    script, pidfile = tmp_path / "script.json", tmp_path / "grandchild.pid"
    write_script(script, {"FAKE_CLAUDE_SCENARIO": "hang", "FAKE_CLAUDE_IGNORE_TERM": "1",
                          "FAKE_CLAUDE_CHILD_PIDFILE": str(pidfile)})
    env = {**os.environ, "PATH": f"{FAKES}{os.pathsep}{os.environ['PATH']}",
           "FAKE_CLAUDE_SCRIPT": str(script), "ANTHROPIC_API_KEY": "sk-test"}
    mc = subprocess.Popen(
        [sys.executable, "-m", "mc_tui", "mission", "--config", str(config), "--no-ui", "--yes"],
        cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 60, "the hung worker")
    except AssertionError:
        mc.kill()
        raise
    db = tmp_path / "repo" / ".git" / "mc" / "mission.db"
    store = Store(db)
    try:
        attempt = store.query("SELECT * FROM attempts WHERE role = 'worker'")[0]
    finally:
        store.close()
    attempt["grandchild"] = int(pidfile.read_text())
    return mc, config, attempt, env


def resume_and_check(tmp_path: Path, config: Path, env: dict[str, str]) -> Store:
    """Resume with a worker that succeeds; the unit is merged once, nothing is lost."""
    write_script(tmp_path / "script.json", {"FAKE_CLAUDE_EDITS": BYE, "FAKE_CLAUDE_COMMIT": "Add bye()"})
    result = run_mc("mission", "--config", str(config), "--no-ui", "--yes", "--resume",
                    env=env, timeout=180)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    store = Store(tmp_path / "repo" / ".git" / "mc" / "mission.db")
    assert [m["status"] for m in store.rows("missions")] == ["completed"]
    assert [u["status"] for u in store.rows("units")] == ["merged"]
    assert len(store.rows("merges", "status = 'promoted'")) == 1
    workers = [(a["status"], a["error"]) for a in store.rows("attempts", "role = 'worker'")]
    assert workers == [("error", "interrupted: the mission process died"), ("completed", None)]
    repo = tmp_path / "repo"
    assert git(repo, "show", "mc/green:app/bye.py") == "def bye():\n    return 'bye'"
    assert git(repo, "status", "--porcelain") == ""  # the user's checkout is untouched
    return store


def test_kill_9_of_mc_leaves_no_agent_process(tmp_path: Path) -> None:
    mc, config, attempt, env = start_hung_mission(tmp_path)
    group = group_members(attempt["pgid"])
    assert attempt["pid"] == attempt["pgid"] and attempt["grandchild"] in group
    assert len(group) == 3  # supervisor, agent, grandchild
    os.kill(mc.pid, signal.SIGKILL)
    mc.wait()
    # both ignore SIGTERM: after kill_grace_seconds (1 s) the supervisor SIGKILLs the group
    wait_for(lambda: not any(alive(p) for p in group), 10, f"agent processes {group} to go")
    store = resume_and_check(tmp_path, config, env)
    notes = [json.loads(e["payload"]).get("message", "") for e in store.query(
        "SELECT payload FROM events WHERE kind = 'log'")]
    assert not any("process group" in n for n in notes)  # nothing was left for the sweep


def test_resume_ends_what_a_killed_supervisor_left(tmp_path: Path) -> None:
    mc, config, attempt, env = start_hung_mission(tmp_path)
    group = group_members(attempt["pgid"])
    agent = next(p for p in group if p not in (attempt["pid"], attempt["grandchild"]))
    # the supervisor dies with mc (say the OOM killer took both): nobody ends the group
    os.kill(attempt["pid"], signal.SIGKILL)
    os.kill(mc.pid, signal.SIGKILL)
    mc.wait()
    wait_for(lambda: not alive(agent), 5, "the agent to die of its parent-death signal")
    time.sleep(0.5)
    grandchild = attempt["grandchild"]
    assert alive(grandchild), "nothing left for the resume to end: the test proves nothing"
    try:
        store = resume_and_check(tmp_path, config, env)
    finally:
        if alive(grandchild):
            os.kill(grandchild, signal.SIGKILL)
    assert not alive(grandchild)
    events = store.query("SELECT id, kind, payload FROM events ORDER BY id")
    ended = [e for e in events if e["kind"] == "log"
             and "ended the process group" in json.loads(e["payload"]).get("message", "")]
    assert len(ended) == 1 and json.loads(ended[0]["payload"])["attempt_id"] == attempt["id"]
    resumed = next(e for e in events if e["kind"] == "mission.resumed")
    assert ended[0]["id"] < resumed["id"]  # before the resumed run adopts any worktree
