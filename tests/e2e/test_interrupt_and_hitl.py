"""Ctrl-C is graceful (exit 130, agents killed, resumable); HITL push gate from another terminal."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.store import Store
from mc_tui.exit_codes import EXIT_NOT_PUSHED
from tests.e2e.conftest import (
    AMBITION_OK,
    OBJECTIVE_MET,
    git,
    objective_not_yet,
    plan_entry,
    run_mc,
    worker_entry,
    write_config,
)

pytestmark = pytest.mark.slow


def wait_for(db: Path, sql: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if db.exists():
            rows = Store(db).query(sql)
            if rows:
                return rows[0]
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for: {sql}")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_ctrl_c_stops_agents_records_state_and_resumes(target: Path) -> None:
    pidfile = target / "agent.pid"
    slow_then_fast = f'''
[[interaction]]
role = "worker"
when = {{ attempt = "1" }}
actions = [{{ type = "run", command = "echo $$ > {pidfile}; exec sleep 60" }}]
''' + worker_entry("Add a farewell", "app/bye.py", "def bye():\\n    return 'bye'\\n")
    config = write_config(target, plan_entry("Add a farewell", "app/bye.py") + AMBITION_OK
                          + OBJECTIVE_MET + slow_then_fast)
    db = target / "repo" / ".git" / "mc" / "mission.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mc_tui", "mission", "--config", str(config), "--no-ui"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
    )
    wait_for(db, "SELECT id FROM events WHERE kind = 'attempt.started' AND payload LIKE '%worker%'")
    deadline = time.monotonic() + 20
    while not pidfile.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    agent_pid = int(pidfile.read_text())
    assert pid_alive(agent_pid)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, out[-2000:] + err[-2000:]
    assert "resume" in out
    time.sleep(0.2)
    assert not pid_alive(agent_pid), "the agent's process survived Ctrl-C"
    store = Store(db)
    assert store.latest_mission()["status"] == "interrupted"
    # and it picks up where it stopped
    resumed = run_mc("mission", "--config", str(config), "--no-ui", "--resume")
    assert resumed.returncode == 0, resumed.stdout[-2000:]
    assert Store(db).units(1)[0]["status"] == "merged"


def _push_config(target: Path, poll_timeout: float) -> Path:
    origin = target / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", str(origin)], check=True)
    git(target / "repo", "remote", "add", "origin", str(origin))
    git(target / "repo", "push", "-q", "origin", "main")
    return write_config(
        target,
        plan_entry("Add a farewell", "app/bye.py") + AMBITION_OK + OBJECTIVE_MET
        + worker_entry("Add a farewell", "app/bye.py", "def bye():\\n    return 'bye'\\n"),
        f'[green_branch]\nauto_push = true\n[hitl]\nenabled = true\ngates = ["push"]\n'
        f"poll_timeout = {poll_timeout}\n",
    )


def test_push_gate_approved_from_another_terminal(target: Path) -> None:
    config = _push_config(target, poll_timeout=60)
    db = target / "repo" / ".git" / "mc" / "mission.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mc_tui", "mission", "--config", str(config), "--no-ui"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
    )
    approval = wait_for(db, "SELECT id FROM approvals WHERE status = 'pending'")
    decided = run_mc("approve", str(approval["id"]), "--config", str(config))
    assert decided.returncode == 0 and "approved" in decided.stdout
    again = run_mc("deny", str(approval["id"]), "--config", str(config))
    assert again.returncode == 1 and "already decided" in again.stderr
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, out[-2000:] + err[-2000:]
    repo = target / "repo"
    assert git(target / "origin.git", "rev-parse", "main") == git(repo, "rev-parse", "mc/green")


def test_push_gate_times_out_to_deny(target: Path) -> None:
    config = _push_config(target, poll_timeout=1)
    before = git(target / "origin.git", "rev-parse", "main")
    result = run_mc("mission", "--config", str(config), "--no-ui")
    # the objective is met, but the work is not on the remote: said so, exit 3
    assert result.returncode == EXIT_NOT_PUSHED, result.stdout[-2000:]
    store = Store(target / "repo" / ".git" / "mc" / "mission.db")
    assert store.latest_mission()["outcome"] == (
        "objective met, not pushed: the push was not approved")
    assert store.rows("approvals")[0]["status"] == "expired"
    pushes = [json.loads(r["payload"]) for r in store.query(
        "SELECT payload FROM events WHERE kind = 'push.result'")]
    assert pushes and not pushes[-1]["ok"]
    assert git(target / "origin.git", "rev-parse", "main") == before  # nothing pushed


def test_a_second_mc_on_the_same_target_is_refused(target: Path) -> None:
    config = _push_config(target, poll_timeout=60)
    db = target / "repo" / ".git" / "mc" / "mission.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mc_tui", "mission", "--config", str(config), "--no-ui"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
    )
    try:
        approval = wait_for(db, "SELECT id FROM approvals WHERE status = 'pending'")
        second = run_mc("mission", "--config", str(config), "--no-ui")
        assert second.returncode == 2
        assert "another mc" in second.stderr
        run_mc("approve", str(approval["id"]), "--config", str(config))
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, out[-2000:] + err[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()


def test_rejected_push_then_next_epoch_absorbs_the_remote(target: Path) -> None:
    repo = target / "repo"
    origin = target / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", str(origin)], check=True)
    git(repo, "remote", "add", "origin", str(origin))
    git(repo, "push", "-q", "origin", "main")
    # Someone else pushes to origin/main while the first unit is being worked on.
    other = target / "other"
    subprocess.run(["git", "clone", "-q", "--branch", "main", str(origin), str(other)], check=True)
    race = (
        f"cd {other} && echo remote > REMOTE.txt && git add REMOTE.txt && "
        "git -c user.name=o -c user.email=o@x commit -qm 'a commit from someone else' && "
        "git push -q origin HEAD:main"
    )
    cassette = (
        plan_entry("Add a farewell", "app/bye.py", 'times = 1\nmatch = "Decompose the objective"')
        + plan_entry("Add a shout", "app/shout.py", 'match = "one more"')
        + AMBITION_OK
        + objective_not_yet("one more: a shout")
        + OBJECTIVE_MET
        + f'''
[[interaction]]
role = "worker"
when = {{ unit_title = "Add a farewell" }}
actions = [
  {{ type = "run", command = "{race}" }},
  {{ type = "write", path = "app/bye.py", content = "def bye():\\n    return 'bye'\\n" }},
  {{ type = "commit", message = "Add a farewell" }},
]
'''
        + worker_entry("Add a shout", "app/shout.py", "def shout():\\n    return 'HEY'\\n")
    )
    config = write_config(
        target, cassette,
        '[green_branch]\nauto_push = true\n[hitl]\nenabled = false\n[rounds]\nmax_rounds = 3\n',
    )
    result = run_mc("mission", "--config", str(config), "--no-ui")
    assert result.returncode == 0, result.stdout[-3000:]
    store = Store(repo / ".git" / "mc" / "mission.db")
    pushes = [json.loads(r["payload"]) for r in store.query(
        "SELECT payload FROM events WHERE kind = 'push.result' ORDER BY id")]
    assert pushes[0]["rejected"] and not pushes[0]["ok"]  # recorded, never forced
    assert pushes[-1]["ok"]
    # the remote's commit went through the queue (verified) into mc/green, then out again
    files = git(repo, "ls-tree", "-r", "--name-only", "mc/green").split()
    assert {"REMOTE.txt", "app/bye.py", "app/shout.py"} <= set(files)
    assert git(origin, "rev-parse", "main") == git(repo, "rev-parse", "mc/green")
    log = git(origin, "log", "--format=%s", "main")
    assert "a commit from someone else" in log
