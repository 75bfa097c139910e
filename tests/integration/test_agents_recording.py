"""run_recorded: attempts, live events (coalesced), costs, cancellation and secrets."""

from __future__ import annotations

import io
import json
import os
import subprocess
from pathlib import Path

import anyio
import pytest
from agents_support import FAKES, make_unit
from rich.console import Console

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
    run_unit_agent,
)
from engine.agents.process import build_env
from engine.config import MissionConfig
from engine.store import Store
from mc_tui.headless import HeadlessRenderer


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
    mission_id, _ = make_unit(store)
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


def test_events_are_in_the_store_while_the_agent_runs(store: Store, tmp_path: Path) -> None:
    mission_id, _ = make_unit(store)
    backend = cassette_backend(tmp_path, '''
[[interaction]]
  [[interaction.actions]]
  type = "text"
  text = "first thought"
  [[interaction.actions]]
  type = "tool"
  tool = "Bash"
  input = "ls"
  [[interaction.actions]]
  type = "sleep"
  seconds = 0.8
  [[interaction.actions]]
  type = "text"
  text = "second thought"
''')
    seen_live: list[list[str]] = []

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            async def watch() -> None:
                await anyio.sleep(0.5)  # the session is asleep now: far from finished
                rows = [e for e in store.events_after(0)]
                assert not any(e.kind == "attempt.finished" for e in rows)
                seen_live.append([e.payload["text"] for e in rows if e.kind == "agent.event"])

            tg.start_soon(watch)
            await run_recorded(store, backend, request(tmp_path), mission_id=mission_id)

    anyio.run(main)
    (live,) = seen_live
    assert "first thought" in live and "ls" in live and "second thought" not in live
    assert "second thought" in [p["text"] for p in agent_events(store)]


def claude_fake(monkeypatch: pytest.MonkeyPatch, scenario: str) -> ClaudeBackend:
    monkeypatch.setenv("PATH", f"{FAKES}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_CLAUDE_SCENARIO", scenario)
    return ClaudeBackend(env_passthrough=["FAKE_CLAUDE_*"], kill_grace=0.5)


def test_crash_records_an_estimated_cost(store: Store, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    mission_id, _ = make_unit(store)
    backend = claude_fake(monkeypatch, "crash")
    attempt_id, result = anyio.run(lambda: run_recorded(
        store, backend, request(tmp_path), mission_id=mission_id, unit_id="u1"))
    assert result.failure_reason == "crash" and result.cost_estimated and result.cost_usd > 0
    row = store.get("attempts", attempt_id)
    assert (row["status"], row["failure_reason"], row["cost_estimated"]) == ("error", "crash", 1)
    assert row["cost_usd"] == pytest.approx(result.cost_usd)
    assert (row["input_tokens"], row["output_tokens"]) == (17, 1030)
    (cost,) = store.rows("costs")
    assert cost["estimated"] == 1 and cost["usd"] == pytest.approx(result.cost_usd)
    types = [p["type"] for p in agent_events(store)]
    assert {"init", "thinking", "text", "tool_use", "tool_result", "usage", "stderr"} <= set(types)


def test_overload_retries_are_recorded(store: Store, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    mission_id, _ = make_unit(store)
    backend = claude_fake(monkeypatch, "overloaded")
    attempt_id, result = anyio.run(lambda: run_recorded(
        store, backend, request(tmp_path), mission_id=mission_id))
    retries = [p for p in agent_events(store) if p["type"] == "retry"]
    assert len(retries) == 3 and all("overloaded" in p["text"] for p in retries)
    row = store.get("attempts", attempt_id)
    assert (row["status"], row["failure_reason"]) == ("error", "overloaded")
    finished = next(e for e in store.events_after(0) if e.kind == "attempt.finished")
    assert finished.payload["failure_reason"] == "overloaded"


def test_chatty_text_is_coalesced(store: Store, tmp_path: Path) -> None:
    mission_id, _ = make_unit(store)
    actions = "\n".join(f'  [[interaction.actions]]\n  type = "text"\n  text = "line {i}"'
                        for i in range(600))
    backend = cassette_backend(tmp_path, f"[[interaction]]\n{actions}\n")
    anyio.run(lambda: run_recorded(store, backend, request(tmp_path), mission_id=mission_id))
    texts = [p["text"] for p in agent_events(store) if p["type"] == "text"]
    assert 1 <= len(texts) < 10
    joined = "\n".join(texts)
    assert joined.count("line ") == 600 and "line 599" in joined


def test_cancellation_closes_the_attempt(store: Store, tmp_path: Path) -> None:
    mission_id, _ = make_unit(store)
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
    mission_id, _ = make_unit(store)
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
    "MC_A2A_TOKEN": "a2a-secret-1111111111",
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
    mission_id, _ = make_unit(store)
    _, result = anyio.run(lambda: run_recorded(store, backend, request(repo), mission_id=mission_id,
                                               unit_id="u1"))
    assert result.ok
    agent_env = json.loads(log.read_text())["env"]
    for name in ("MC_TELEGRAM_TOKEN", "MC_DASHBOARD_TOKEN", "MC_A2A_TOKEN", "MY_BOT_TOKEN"):
        assert name not in agent_env
    assert agent_env["ANTHROPIC_API_KEY"] == SECRETS["ANTHROPIC_API_KEY"]
    # the agent echoed its whole environment (text, stderr, result): the store redacted it
    assert any("ANTHROPIC_API_KEY=[REDACTED]" in p["text"] for p in agent_events(store))
    # a worker session too (log events: no marker, outcome from git facts), with the secret
    # also in the final text and in a file the agent committed
    monkeypatch.setenv("FAKE_CLAUDE_MARKER", "none")
    monkeypatch.setenv("FAKE_CLAUDE_EDITS", json.dumps(
        [{"path": "leak.txt", "content": SECRETS["ANTHROPIC_API_KEY"]}]))
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@x",
                    "commit", "-q", "--allow-empty", "-m", "base"], check=True)
    base = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
    outcome = anyio.run(lambda: run_unit_agent(
        store, backend, config=config, mission_id=mission_id, unit=store.get("units", "u1"),
        objective="calc", workdir=repo, base_commit=base, slot=1))
    assert outcome.marker_source == "git" and outcome.files_changed == ["leak.txt"]
    # the logs: what `mc --no-ui` prints (plain lines and --json) from the same events
    logs = []
    for mode in ("plain", "json"):
        out = io.StringIO()
        renderer = HeadlessRenderer(store, config, mode=mode,
                                    console=Console(file=out, width=200, color_system=None))
        for event in store.events_after(0):
            renderer.handle(event)
        logs.append(out.getvalue())
    assert "no valid result marker" in logs[0] and "[REDACTED]" in logs[1]
    store.close()
    blob = b"".join(p.read_bytes() for p in db.parent.iterdir() if p.is_file())
    assert b"ANTHROPIC_API_KEY" in blob
    for value in SECRETS.values():
        assert value.encode() not in blob
        for text in logs:
            assert value not in text


def test_build_env_default_source_drops_mc_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    env = build_env(passthrough=["MC_*"], deny=["MY_BOT_TOKEN"])
    assert "MC_TELEGRAM_TOKEN" not in env and "MC_DASHBOARD_TOKEN" not in env
    assert "MY_BOT_TOKEN" not in env and env["ANTHROPIC_API_KEY"] == SECRETS["ANTHROPIC_API_KEY"]


def test_attempt_records_its_process_identity(store: Store, tmp_path: Path) -> None:
    """pid, process group and start time go on the attempt row while the agent runs."""
    mission_id, _ = make_unit(store)
    seen: list[dict] = []
    backend = cassette_backend(tmp_path, '''
[[interaction]]
  [[interaction.actions]]
  type = "run"
  command = "cat /proc/$PPID/stat > supervisor.stat; ps -o pgid= -p $$ > pgid.txt"
''')

    class Watching(AgentBackend):
        name = "scripted"

        def check_available(self) -> None:
            pass

        async def run(self, req, on_event=None):  # type: ignore[no-untyped-def]
            result = await backend.run(req, on_event)
            seen.append(store.query("SELECT * FROM attempts")[0])  # before it is closed
            return result

    attempt_id, result = anyio.run(lambda: run_recorded(
        store, Watching(), request(tmp_path), mission_id=mission_id, unit_id="u1"))
    assert result.ok, result.error
    stat = (tmp_path / "supervisor.stat").read_text()
    fields = stat[stat.rfind(")") + 2:].split()
    row = store.get("attempts", attempt_id)
    assert seen[0]["status"] == "running" and seen[0]["pid"] == row["pid"]
    assert row["pid"] == int(stat.split()[0]) == row["pgid"]  # the supervisor leads the group
    assert int((tmp_path / "pgid.txt").read_text()) == row["pgid"]  # the agent is in it
    assert row["proc_start"] == int(fields[19])  # /proc/<pid>/stat field 22
    assert row["boot_id"] == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
