"""A whole mission through the Claude Code backend (the protocol double) on worker hosts: one
SSH host (a real sshd on 127.0.0.1) and one bubblewrap sandbox, run by ``mc mission``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from engine.store import Store
from tests.e2e.conftest import git, run_mc, write_config
from tests.e2e.test_claude_mission import FAKES, PASSTHROUGH, script
from tests.support.sshd import start_sshd

pytestmark = pytest.mark.slow


def test_a_claude_mission_on_an_ssh_host_and_a_sandbox(target: Path) -> None:
    sshd = start_sshd(target / "sshd")
    try:
        rules = script(target)  # the double's script: a file the sandbox must be let read
        hosts = (sshd.host_config("remote")
                 + '\n[[hosts]]\nkind = "sandbox"\nname = "sbx"\npermission_mode = "acceptEdits"\n'
                 + f'read_only = ["{rules}"]\n')
        config = write_config(target, "", PASSTHROUGH, backend="claude")
        config.write_text(config.read_text() + hosts)
        env = {"PATH": f"{FAKES}{os.pathsep}{os.environ['PATH']}",
               "FAKE_CLAUDE_SCRIPT": str(rules),
               "ANTHROPIC_API_KEY": "sk-test-secret-value-123"}
        result = run_mc("mission", "--config", str(config), "--no-ui", env=env, timeout=240)
    finally:
        sshd.stop()
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    store = Store(target / "repo" / ".git" / "mc" / "mission.db")
    mission = store.latest_mission()
    assert mission["status"] == "completed"
    assert sorted(u["status"] for u in store.units(mission["id"])) == ["merged", "merged"]
    workers = store.rows("attempts", "role = 'worker' AND status = 'completed'")
    assert {a["host"] for a in workers} == {"remote", "sbx"}
    assert all(a["session_id"] and a["turns"] >= 1 for a in workers)  # the same parser
    others = store.rows("attempts", "role != 'worker'")  # planner, reviewer, ...: always here
    assert others and {a["host"] for a in others} == {None}
    types = {json.loads(r["payload"])["type"] for r in store.query(
        "SELECT payload FROM events WHERE kind = 'agent.event'")}
    assert {"tool_use", "tool_result", "text"} <= types
    files = git(target / "repo", "ls-tree", "-r", "--name-only", "mc/green").split()
    assert "app/bye.py" in files and "app/shout.py" in files
    assert (target / "sshd" / "remote" / "repo.git").is_dir()
