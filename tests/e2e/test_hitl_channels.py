"""Approval channels on one scripted headless mission: Telegram (a Bot API double on
loopback) decides the plan, the approval file decides the push, each channel shows the
other's decision, and the bot token reaches neither the store, the output nor the agents."""

from __future__ import annotations

import os
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
    write_config,
)
from tests.support.telegram_api import BotApiDouble

pytestmark = pytest.mark.slow

TOKEN = "987654:e2e-SECRET-token"
CHAT = 5151


def pending(db: Path, gate: str, proc: subprocess.Popen[str], timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if db.exists():
            rows = Store(db).query(
                "SELECT * FROM approvals WHERE status = 'pending' AND gate = ?", (gate,))
            if rows:
                return rows[0]
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"mission ended ({proc.returncode}):\n{out[-3000:]}{err[-3000:]}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"no pending {gate} approval")


def test_telegram_decides_the_plan_the_file_decides_the_push(target: Path) -> None:
    api = BotApiDouble(TOKEN).start()
    env_dump = target / "agent-env.txt"
    try:
        origin = target / "origin.git"
        subprocess.run(["git", "init", "-q", "--bare", str(origin)], check=True)
        git(target / "repo", "remote", "add", "origin", str(origin))
        git(target / "repo", "push", "-q", "origin", "main")
        worker = f'''
[[interaction]]
role = "worker"
actions = [
  {{ type = "run", command = "env > {env_dump}" }},
  {{ type = "write", path = "app/bye.py", content = "def bye():\\\\n    return 'bye'\\\\n" }},
  {{ type = "commit", message = "Add a farewell" }},
]
'''
        config = write_config(
            target, plan_entry("Add a farewell", "app/bye.py") + AMBITION_OK + OBJECTIVE_MET
            + worker,
            '[green_branch]\nauto_push = true\n'
            '[hitl]\nenabled = true\ngates = ["plan", "push"]\npoll_timeout = 60\n'
            'approval_file = "answers.txt"\n'
            f'[hitl.telegram]\nenabled = true\nchat_id = "{CHAT}"\ntoken_env = "TG_BOT_TOKEN"\n'
            f'api_url = "{api.url}"\nlong_poll = 1\n'
            '[agent]\nenv_passthrough = ["TG_*"]\n',  # asked for, and still denied
        )
        db = target / "repo" / ".git" / "mc" / "mission.db"
        proc = subprocess.Popen(
            [sys.executable, "-m", "mc_tui", "mission", "--config", str(config), "--no-ui"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
            env={**os.environ, "TG_BOT_TOKEN": TOKEN},
        )
        plan = pending(db, "plan", proc)
        sent = api.wait_for("sendMessage")[0]
        assert sent["text"].startswith(f"Approval #{plan['id']} · gate: plan")
        assert "└─ 1. Add a farewell  (app/bye.py)" in sent["text"]
        api.press(next(iter(api.messages)), f"mc:approve:{plan['id']}", username="carol")
        push = pending(db, "push", proc)
        posted = api.wait_for("sendMessage", 2)[1]
        assert "gate: push" in posted["text"] and "app/bye.py" in posted["text"]
        with (target / "answers.txt").open("a") as f:
            f.write("approve it all\n")
            f.write(f"approve {push['id']}\n")
        out, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, out[-3000:] + err[-3000:]
        edits = {e["message_id"]: e["text"] for e in api.wait_for("editMessageText", 2)}
        plan_msg, push_msg = sorted(api.messages)
        assert edits[plan_msg].endswith("✅ Approved by telegram:@carol")
        assert edits[push_msg].endswith("✅ Approved by file:answers.txt:2")
        assert "approval file" in out and "line 1 ignored" in out  # the malformed line, said
        store = Store(db)
        assert [a["decided_by"] for a in store.rows("approvals")] == [
            "telegram:@carol", "file:answers.txt:2"]
        assert git(origin, "rev-parse", "main") == git(target / "repo", "rev-parse", "mc/green")
        # the token: used for every call, and nowhere else
        assert {r.token for r in api.requests} == {TOKEN}
        assert TOKEN not in out + err
        assert TOKEN.encode() not in db.read_bytes()
        agent_env = env_dump.read_text()
        assert "PATH=" in agent_env and "TG_BOT_TOKEN" not in agent_env and TOKEN not in agent_env
    finally:
        api.stop()
