"""A 529 storm: the workers' model is overloaded, the breaker of that backend/model opens and
the mission degrades (pause: nothing is dispatched while it is open); the storm ends, the
half-open probe succeeds, the degradation is lifted and the mission completes.

The fast version drives the Claude backend with the protocol double (``overloaded``
scenario, switched off from outside when the breaker has opened, as a real storm ends);
the slow one runs the real Claude Code against the scripted model server, whose worker
rule answers 529 a few times and then stops."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from engine.store import Store
from tests.e2e.conftest import run_mc, write_config
from tests.e2e.test_claude_mission import FAKES, PLAN

pytestmark = pytest.mark.slow

RESET = 1.5
DEGRADE = (
    '[agent]\nenv_passthrough = ["FAKE_CLAUDE_SCRIPT", "FAKE_CLAUDE_SCENARIO"]\n'
    "retry_backoff_seconds = 0.1\n"
    f'[degradation]\nfailure_threshold = 2\nreset_timeout = {RESET}\nfallback_strategy = "pause"\n'
)


def rules(storm: bool) -> list[dict]:
    out: list[dict] = [
        {"match": "You are the planner", "env": {"FAKE_CLAUDE_RESULT": json.dumps(PLAN)}},
        {"match": "You review plans", "env": {"FAKE_CLAUDE_RESULT": '{"score": 8, "feedback": "good"}'}},
        {"match": "You are the code reviewer", "env": {
            "FAKE_CLAUDE_RESULT": '{"alignment": 9, "approach": 8, "tests": 7, "feedback": "fine"}'}},
        {"match": "You verify objectives", "env": {
            "FAKE_CLAUDE_RESULT": '{"met": true, "confidence": 0.9, "feedback": "both merged"}'}},
    ]
    if storm:
        out.append({"match": "Add a farewell|Add a shout", "env": {"FAKE_CLAUDE_SCENARIO": "overloaded"}})
    out += [
        {"match": "Add a farewell", "env": {
            "FAKE_CLAUDE_EDITS": [{"path": "app/bye.py", "content": "def bye():\n    return 'bye'\n"}],
            "FAKE_CLAUDE_COMMIT": "Add bye()"}},
        {"match": "Add a shout", "env": {
            "FAKE_CLAUDE_EDITS": [{"path": "app/shout.py", "content": "def shout(s):\n    return s.upper() + '!'\n"}],
            "FAKE_CLAUDE_COMMIT": "Add shout()"}},
    ]
    return out


def end_storm_when_open(db: Path, script: Path, done: threading.Event) -> None:
    """Like a provider recovering: once the breaker is open, the model answers again."""
    while not done.is_set():
        if db.exists():
            try:
                with sqlite3.connect(db, timeout=5) as conn:
                    hit = conn.execute("SELECT 1 FROM events WHERE kind = 'degradation.applied'"
                                       ).fetchone()
            except sqlite3.Error:
                hit = None
            if hit:
                script.write_text(json.dumps(rules(storm=False)))
                return
        time.sleep(0.05)


def test_a_529_storm_opens_the_breaker_degrades_then_recovers(target: Path) -> None:
    config = write_config(target, "", DEGRADE, backend="claude")
    script = target / "script.json"
    script.write_text(json.dumps(rules(storm=True)))
    db = target / "repo" / ".git" / "mc" / "mission.db"
    done = threading.Event()
    watcher = threading.Thread(target=end_storm_when_open, args=(db, script, done), daemon=True)
    watcher.start()
    env = {"PATH": f"{FAKES}{os.pathsep}{os.environ['PATH']}", "FAKE_CLAUDE_SCRIPT": str(script),
           "ANTHROPIC_API_KEY": "sk-test-secret-value-123"}
    try:
        result = run_mc("mission", "--config", str(config), "--no-ui", env=env)
    finally:
        done.set()
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    store = Store(db)
    mission = store.latest_mission()
    assert mission["status"] == "completed"
    assert sorted(u["status"] for u in store.units(mission["id"]) if u["is_leaf"]) == ["merged", "merged"]
    events = store.events_after(0)
    trans = [(e.payload["component"], e.payload["state"]) for e in events
             if e.kind == "degradation.breaker"]
    assert trans[0] == ("agent:claude/sonnet", "open"), trans
    assert trans[-1] == ("agent:claude/sonnet", "closed"), trans
    applied = [e for e in events if e.kind == "degradation.applied"]
    lifted = [e for e in events if e.kind == "degradation.lifted"]
    assert len(applied) == 1 and len(lifted) == 1 and applied[0].id < lifted[0].id
    # pause: no worker session started while the breaker was open (before the half-open probe)
    opened = next(e for e in events if e.kind == "degradation.breaker" and e.payload["state"] == "open")
    half = next(e for e in events if e.kind == "degradation.breaker" and e.payload["state"] == "half_open")
    started = [e for e in events if e.kind == "attempt.started" and e.payload["role"] == "worker"]
    assert not [e for e in started if opened.id < e.id < half.id and e.ts > opened.ts + 0.5]
    assert half.ts - opened.ts >= RESET - 0.1
    overloaded = store.query("SELECT COUNT(*) AS n FROM attempts WHERE failure_reason = 'overloaded'")
    assert overloaded[0]["n"] >= 2
    rows = store.query("SELECT component, state FROM breakers WHERE mission_id = ?", (mission["id"],))
    assert ("agent:claude/sonnet", "closed") in {(r["component"], r["state"]) for r in rows}
    status = run_mc("status", "--config", str(config))
    assert "agent:claude/sonnet" in status.stdout
    store.close()


def test_a_529_storm_through_the_real_claude_code(claude_cli: str, tmp_path: Path) -> None:
    """The real CLI against the scripted server: the worker's first requests get 529
    (Claude Code's own retries cut to none), the breaker opens and dispatch pauses; the
    storm ends (the rule is spent), the probe succeeds and the unit lands on mc/green."""
    from tests.e2e.conftest import git, make_target
    from tests.e2e.test_real_claude import TEST_CMD, UNITS, VERIFY, agent_env
    from tests.support.model_server import ModelServer, Rule, overloaded
    from tests.support.scripts import WORKER, small_mission_rules

    repo = make_target(tmp_path)
    git(repo, "config", "user.name", "Dev")
    git(repo, "config", "user.email", "dev@example.invalid")
    (repo / ".gitignore").write_text("__pycache__/\n")
    git(repo, "add", ".gitignore")
    git(repo, "commit", "-q", "-m", "ignore bytecode")
    config = tmp_path / "mission-control.toml"
    config.write_text(
        f'[target]\npath = "repo"\nobjective = "Add bye"\n'
        f'[target.verification]\ncommand = "{VERIFY}"\n'
        "[agent]\nretry_backoff_seconds = 0.1\n"
        f'[degradation]\nfailure_threshold = 2\nreset_timeout = {RESET}\nfallback_strategy = "pause"\n')
    storm = Rule(name="storm", match=WORKER, fault=overloaded(), times=2)
    with ModelServer([storm, *small_mission_rules(UNITS[:1], test_command=TEST_CMD,
                                                  commit=True)]) as server:
        env = agent_env(claude_cli, server.url, tmp_path / "home")
        env["CLAUDE_CODE_MAX_RETRIES"] = "0"
        result = run_mc("--no-ui", "--yes", "--config", str(config), cwd=tmp_path,
                        timeout=600, env=env)
        faults = [r.fault for r in server.model_requests() if r.fault]
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert len(faults) == 2, faults
    store = Store(repo / ".git" / "mc" / "mission.db")
    mission = store.latest_mission()
    assert mission["status"] == "completed"
    events = store.events_after(0)
    trans = [e.payload["state"] for e in events if e.kind == "degradation.breaker"
             and e.payload["component"].startswith("agent:claude/")]
    assert trans == ["open", "half_open", "closed"], trans
    assert [e.kind for e in events if e.kind.startswith("degradation.") and e.kind != "degradation.breaker"
            ] == ["degradation.applied", "degradation.lifted"]
    reasons = [a["failure_reason"] for a in store.rows("attempts", "role = 'worker'")]
    assert reasons[:2] == ["overloaded", "overloaded"] and reasons[-1] is None, reasons
    store.close()
