"""run_recorded: attempts, live events (coalesced), costs, cancellation and secrets."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import anyio
import pytest

from engine.agents import (
    AgentBackend,
    AgentEvent,
    AgentRequest,
    AgentResult,
    AgentRole,
    ClaudeBackend,
    ScriptedBackend,
    load_cassette,
    make_backend,
    run_recorded,
)
from engine.agents.process import build_env
from engine.config import MissionConfig
from engine.store import Store

FAKES = Path(__file__).resolve().parents[1] / "fakes"


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "state" / "mission.db")
    yield s
    s.close()


def new_mission(store: Store) -> int:
    mission_id = store.insert("missions", {"objective": "calc", "status": "running",
                                           "started_at": time.time()})
    now = time.time()
    store.insert("units", {"id": "u1", "mission_id": mission_id, "title": "Add subtract",
                           "status": "running", "created_at": now, "updated_at": now})
    return int(mission_id)


def cassette_backend(tmp_path: Path, text: str) -> ScriptedBackend:
    path = tmp_path / "cassette.toml"
    path.write_text(text)
    return ScriptedBackend(load_cassette(path), kill_grace=0.3)


def request(tmp_path: Path, prompt: str = "go", timeout: float = 10) -> AgentRequest:
    return AgentRequest(role=AgentRole.WORKER, prompt=prompt, workdir=tmp_path, model="sonnet",
                        timeout_s=timeout)


def agent_events(store: Store) -> list[dict]:
    return [e.payload for e in store.events_after(0) if e.kind == "agent.event"]


def test_attempt_row_events_and_cost(store: Store, tmp_path: Path) -> None:
    mission_id = new_mission(store)
    backend = cassette_backend(tmp_path, '''
[[interaction]]
cost_usd = 0.25
input_tokens = 100
output_tokens = 20
turns = 2
  [[interaction.actions]]
  type = "text"
  text = "hello"
  [[interaction.actions]]
  type = "tool"
  tool = "Bash"
  input = "ls"
  output = "calc.py"
''')
    seen: list[AgentEvent] = []
    attempt_id, result = anyio.run(lambda: run_recorded(
        store, backend, request(tmp_path), mission_id=mission_id, unit_id="u1", slot=2,
        on_event=seen.append))
    assert result.status == "completed" and attempt_id > 0 and seen
    row = store.get("attempts", attempt_id)
    assert row["status"] == "completed" and row["backend"] == "scripted" and row["slot"] == 2
    assert (row["cost_usd"], row["input_tokens"], row["output_tokens"], row["turns"]) == (
        0.25, 100, 20, 2)
    assert row["ended_at"] is not None and row["session_id"] == result.session_id
    kinds = [e.kind for e in store.events_after(0)]
    assert kinds.index("attempt.started") < kinds.index("agent.event") < kinds.index(
        "attempt.finished")
    started = next(e for e in store.events_after(0) if e.kind == "attempt.started")
    assert started.payload == {"attempt_id": attempt_id, "role": "worker", "backend": "scripted",
                               "model": "sonnet", "slot": 2}
    finished = next(e for e in store.events_after(0) if e.kind == "attempt.finished")
    assert finished.payload["status"] == "completed" and finished.payload["cost_usd"] == 0.25
    types = [p["type"] for p in agent_events(store)]
    assert types == ["init", "text", "tool_use", "tool_result", "usage"]
    assert all(p["attempt_id"] == attempt_id and p["slot"] == 2 for p in agent_events(store))
    assert store.mission_cost(mission_id) == 0.25
    cost = store.rows("costs")[0]
    assert (cost["attempt_id"], cost["role"], cost["unit_id"], cost["estimated"]) == (
        attempt_id, "worker", "u1", 0)
    assert store.get("units", "u1")["cost_usd"] == 0.25


def test_chatty_text_is_coalesced(store: Store, tmp_path: Path) -> None:
    mission_id = new_mission(store)
    actions = "\n".join(f'  [[interaction.actions]]\n  type = "text"\n  text = "line {i}"'
                        for i in range(600))
    backend = cassette_backend(tmp_path, f"[[interaction]]\n{actions}\n")
    anyio.run(lambda: run_recorded(store, backend, request(tmp_path), mission_id=mission_id))
    texts = [p["text"] for p in agent_events(store) if p["type"] == "text"]
    assert 1 <= len(texts) < 10
    joined = "\n".join(texts)
    assert joined.count("line ") == 600 and "line 599" in joined


def test_cancellation_closes_the_attempt(store: Store, tmp_path: Path) -> None:
    mission_id = new_mission(store)
    backend = cassette_backend(tmp_path, '[[interaction]]\n  [[interaction.actions]]\n'
                                         '  type = "hang"\n')

    async def main() -> None:
        with anyio.move_on_after(0.3):
            await run_recorded(store, backend, request(tmp_path), mission_id=mission_id)

    anyio.run(main)
    row = store.rows("attempts")[0]
    assert (row["status"], row["failure_reason"]) == ("error", "cancelled")
    assert any(e.kind == "attempt.finished" for e in store.events_after(0))


class Exploding(AgentBackend):
    name = "exploding"

    def check_available(self) -> None:
        pass

    async def run(self, request, on_event=None) -> AgentResult:
        raise RuntimeError("backend bug")


def test_backend_bug_becomes_an_error_result(store: Store, tmp_path: Path) -> None:
    mission_id = new_mission(store)
    attempt_id, result = anyio.run(lambda: run_recorded(
        store, Exploding(), request(tmp_path), mission_id=mission_id))
    assert result.status == "error" and result.failure_reason == "crash"
    assert "backend bug" in store.get("attempts", attempt_id)["error"]


def test_without_a_mission_no_attempt_row(store: Store, tmp_path: Path) -> None:
    backend = cassette_backend(tmp_path, "[[interaction]]\ncost_usd = 0.5\n")
    attempt_id, result = anyio.run(lambda: run_recorded(store, backend, request(tmp_path),
                                                        mission_id=None))
    assert attempt_id == 0 and result.ok and store.rows("attempts") == []
    assert store.rows("costs")[0]["usd"] == 0.5


SECRETS = {
    "MC_TELEGRAM_TOKEN": "tg-secret-0123456789",
    "MC_DASHBOARD_TOKEN": "dash-secret-9876543210",
    "MY_BOT_TOKEN": "bot-secret-5555555555",
    "ANTHROPIC_API_KEY": "sk-ant-fake-key-424242",  # the agent needs this one
}


def test_secrets_never_reach_the_agent_or_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PATH", f"{FAKES}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_CLAUDE_SCENARIO", "print_env")
    log = tmp_path / "fake.json"
    monkeypatch.setenv("FAKE_CLAUDE_LOG", str(log))
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    config = MissionConfig(
        agent={"backend": "claude", "env_passthrough": ["FAKE_CLAUDE_*", "MY_*", "MC_*"],
               "kill_grace_seconds": 0.5},
        hitl={"telegram": {"token_env": "MY_BOT_TOKEN"}},
    )
    backend = make_backend(config)
    assert isinstance(backend, ClaudeBackend)
    db = tmp_path / "state" / "mission.db"
    store = Store(db)  # created after the secrets are in the environment
    mission_id = new_mission(store)
    _, result = anyio.run(lambda: run_recorded(store, backend, request(repo), mission_id=mission_id,
                                               unit_id="u1"))
    assert result.ok
    agent_env = json.loads(log.read_text())["env"]
    for name in ("MC_TELEGRAM_TOKEN", "MC_DASHBOARD_TOKEN", "MY_BOT_TOKEN"):
        assert name not in agent_env
    assert agent_env["ANTHROPIC_API_KEY"] == SECRETS["ANTHROPIC_API_KEY"]
    # the agent echoed its whole environment (text, stderr, result): the store redacted it
    assert any("ANTHROPIC_API_KEY=[REDACTED]" in p["text"] for p in agent_events(store))
    store.close()
    blob = b"".join(p.read_bytes() for p in db.parent.iterdir() if p.is_file())
    assert b"ANTHROPIC_API_KEY" in blob
    for value in SECRETS.values():
        assert value.encode() not in blob


def test_build_env_default_source_drops_mc_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    env = build_env(passthrough=["MC_*"], deny=["MY_BOT_TOKEN"])
    assert "MC_TELEGRAM_TOKEN" not in env and "MC_DASHBOARD_TOKEN" not in env
    assert "MY_BOT_TOKEN" not in env and env["ANTHROPIC_API_KEY"] == SECRETS["ANTHROPIC_API_KEY"]
