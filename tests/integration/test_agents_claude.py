"""The real Claude backend end to end against tests/fakes/claude, one test per scenario."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest
from agents_support import FAKES

from engine.agents import (
    AgentEvent,
    AgentRequest,
    AgentResult,
    AgentRole,
    AgentUnavailable,
    ClaudeBackend,
    FailureReason,
    parse_marker,
)
from engine.agents.pricing import estimate_cost


@pytest.fixture
def fake_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("PATH", f"{FAKES}{os.pathsep}{os.environ['PATH']}")
    for name in list(os.environ):
        if name.startswith("FAKE_CLAUDE_"):
            monkeypatch.delenv(name)
    log = tmp_path / "fake-claude.json"
    monkeypatch.setenv("FAKE_CLAUDE_LOG", str(log))
    return log


def run(repo: Path, scenario: str, monkeypatch: pytest.MonkeyPatch, *, timeout: float = 20,
        arrivals: list[float] | None = None,
        **overrides: object) -> tuple[AgentResult, list[AgentEvent]]:
    monkeypatch.setenv("FAKE_CLAUDE_SCENARIO", scenario)
    backend = ClaudeBackend(env_passthrough=["FAKE_CLAUDE_*"], kill_grace=0.5)
    request = AgentRequest(role=AgentRole.WORKER, prompt="Add a subtract function.", workdir=repo,
                           timeout_s=timeout, budget_usd=0.25, max_turns=7,
                           allowed_tools=["Read", "Edit", "Write", "Bash(git add:*)",
                                          "Bash(git commit:*)"],
                           system_prompt="You are a test writer.")
    for key, value in overrides.items():
        setattr(request, key, value)
    events: list[AgentEvent] = []

    def on_event(event: AgentEvent) -> None:
        events.append(event)
        if arrivals is not None:
            arrivals.append(time.monotonic())

    async def main() -> AgentResult:
        return await backend.run(request, on_event)

    return anyio.run(main), events


def kinds(events: list[AgentEvent]) -> list[str]:
    return [e.type for e in events]


def test_success_makes_real_edits_and_reports_everything(repo, fake_env, monkeypatch) -> None:
    edits = [{"path": "calc.py", "content": "def add(a, b):\n    return a + b\n\n\n"
                                            "def subtract(a, b):\n    return a - b\n"}]
    monkeypatch.setenv("FAKE_CLAUDE_EDITS", json.dumps(edits))
    monkeypatch.setenv("FAKE_CLAUDE_COMMIT", "Add subtract")
    result, events = run(repo, "success", monkeypatch)
    assert result.status == "completed" and result.exit_code == 0
    assert result.cost_usd == pytest.approx(0.0421) and not result.cost_estimated
    assert result.turns == 3 and result.tokens.output > 0
    marker = parse_marker(result.text)
    assert marker is not None and marker.files_changed == ["calc.py"]
    assert kinds(events)[:2] == ["init", "rate_limit"]
    assert {"text", "tool_use", "tool_result", "usage"} <= set(kinds(events))
    # four messages (look, Write, Bash commit, answer); the first one's usage is repeated on
    # its text and tool_use lines and must be counted once: the total is the plain sum
    usage = [e for e in events if e.type == "usage"]
    assert len(usage) == 4
    assert usage[-1].data["total"] == {"input": 3 + 5 + 5 + 4, "output": 120 + 60 + 60 + 90,
                                       "cache_read": 0 + 2000 + 2000 + 2500, "cache_write": 2000}
    assert result.denials == [] and result.error is None
    assert "subtract" in (repo / "calc.py").read_text()
    log = subprocess.run(["git", "-C", str(repo), "log", "--format=%s"], capture_output=True,
                         text=True, check=True).stdout.split("\n")
    assert log[0] == "Add subtract"
    # the command line: like the real CLI wants it, and the prompt is NOT in it
    seen = json.loads(fake_env.read_text())
    argv = seen["argv"]
    assert argv[:5] == ["-p", "--output-format", "stream-json", "--verbose", "--model"]
    assert argv[argv.index("--max-turns") + 1] == "7"
    assert argv[argv.index("--max-budget-usd") + 1] == "0.25"
    assert argv[argv.index("--permission-mode") + 1] == "acceptEdits"
    assert argv[argv.index("--allowedTools") + 1] == ("Read,Edit,Write,Bash(git add:*),"
                                                      "Bash(git commit:*)")
    assert argv[argv.index("--append-system-prompt") + 1] == "You are a test writer."
    assert argv[argv.index("--session-id") + 1] == result.session_id
    assert seen["stdin"] == "Add a subtract function."
    assert not any("subtract function" in a for a in argv)
    assert seen["cwd"] == str(repo)


def test_resume_and_read_only(repo, fake_env, monkeypatch) -> None:
    result, _ = run(repo, "success", monkeypatch, resume_session_id="abc-session", read_only=True)
    argv = json.loads(fake_env.read_text())["argv"]
    assert argv[argv.index("--resume") + 1] == "abc-session" and "--session-id" not in argv
    assert argv[argv.index("--permission-mode") + 1] == "plan"
    assert result.session_id == "abc-session"


def test_thinking_blocks(repo, fake_env, monkeypatch) -> None:
    result, events = run(repo, "thinking", monkeypatch)
    assert result.status == "completed"
    thinking = [e for e in events if e.type == "thinking"]
    assert thinking and "think" in thinking[0].text


def test_max_turns(repo, fake_env, monkeypatch) -> None:
    result, _ = run(repo, "max_turns", monkeypatch)
    assert (result.status, result.failure_reason) == ("failed", FailureReason.MAX_TURNS)
    assert result.exit_code == 1 and "maximum number of turns (7)" in result.error


def test_max_budget(repo, fake_env, monkeypatch) -> None:
    result, _ = run(repo, "max_budget", monkeypatch)
    assert (result.status, result.failure_reason) == ("budget", FailureReason.BUDGET)
    assert result.cost_usd == pytest.approx(0.1274)  # spend can pass the cap: reported as is
    assert "$0.25" in result.error


@pytest.mark.parametrize("scenario", ["auth", "not_logged_in"])
def test_auth_failure(repo, fake_env, monkeypatch, scenario) -> None:
    result, events = run(repo, scenario, monkeypatch)
    assert (result.status, result.failure_reason) == ("error", FailureReason.AUTH)
    assert "/login" in result.error


def test_usage_limit(repo, fake_env, monkeypatch) -> None:
    result, events = run(repo, "usage_limit", monkeypatch)
    assert result.failure_reason == FailureReason.USAGE_LIMIT
    assert any(e.type == "rate_limit" and e.data.get("status") == "rejected" for e in events)


def test_overloaded_after_retries(repo, fake_env, monkeypatch) -> None:
    result, events = run(repo, "overloaded", monkeypatch)
    assert (result.status, result.failure_reason) == ("error", FailureReason.OVERLOADED)
    assert [e.data["attempt"] for e in events if e.type == "retry"] == [1, 2, 3]
    assert result.cost_estimated  # no total_cost_usd on that result line


def test_error_during_execution(repo, fake_env, monkeypatch) -> None:
    result, _ = run(repo, "during_execution", monkeypatch)
    assert result.status == "error" and result.failure_reason == FailureReason.OVERLOADED


def test_hang_is_killed_with_its_descendants(repo, fake_env, monkeypatch, tmp_path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    monkeypatch.setenv("FAKE_CLAUDE_IGNORE_TERM", "1")
    monkeypatch.setenv("FAKE_CLAUDE_CHILD_PIDFILE", str(pidfile))
    arrivals: list[float] = []
    started = time.monotonic()
    result, events = run(repo, "hang", monkeypatch, timeout=1.5, arrivals=arrivals)
    assert time.monotonic() - started < 8
    assert (result.status, result.failure_reason) == ("timeout", FailureReason.TIMEOUT)
    # lines are parsed as they arrive, not after the process is gone
    text_at = arrivals[kinds(events).index("text")]
    assert text_at - started < 1.2, text_at - started
    assert result.cost_estimated and result.cost_usd > 0  # estimated from the usage seen
    leader = json.loads(fake_env.read_text())["pid"]
    for pid in (leader, int(pidfile.read_text())):
        stat = Path(f"/proc/{pid}/stat")
        assert not stat.exists() or stat.read_text().split(") ")[1][0] in "ZX", pid


def test_garbage_lines_are_survived(repo, fake_env, monkeypatch) -> None:
    result, events = run(repo, "garbage", monkeypatch)
    assert result.status == "completed" and parse_marker(result.text) is not None
    assert sum(1 for e in events if e.type == "notice") == 4


def test_two_megabyte_line(repo, fake_env, monkeypatch) -> None:
    result, events = run(repo, "huge_line", monkeypatch)
    assert result.status == "completed" and result.text == "after the big line"
    assert any(e.type == "notice" and "too long" in e.text for e in events)
    assert [e.text for e in events if e.type == "text"] == ["after the big line"]


def test_crash_mid_stream(repo, fake_env, monkeypatch) -> None:
    monkeypatch.setenv("FAKE_CLAUDE_EDITS", json.dumps([{"path": "half.py", "content": "x = 1\n"}]))
    result, events = run(repo, "crash", monkeypatch)
    assert (result.status, result.failure_reason) == ("error", FailureReason.CRASH)
    assert result.exit_code == 3 and "TypeError" in result.error
    # no result line: tokens are the running sum (the first message's usage sits on three
    # block lines and counts once) and the cost is a marked estimate at the resolved model
    # (the Write of half.py is a message of its own: 5 in, 60 out, 2000 cache read)
    assert result.tokens.as_dict() == {"input": 22, "output": 1090, "cache_read": 7000,
                                       "cache_write": 5000}
    assert result.cost_estimated
    assert result.cost_usd == pytest.approx(estimate_cost("claude-sonnet-4-6", result.tokens))
    assert result.cost_usd == pytest.approx((22 * 3 + 1090 * 15 + 5000 * 3.75 + 7000 * 0.3) / 1e6)
    assert result.turns == 3  # messages seen: the Write, the three blocks, the last text
    assert {"thinking", "text", "tool_use", "tool_result"} <= set(kinds(events))
    assert any(e.type == "stderr" for e in events)
    assert (repo / "half.py").exists()


def test_partial_messages_and_compaction(repo, fake_env, monkeypatch) -> None:
    result, events = run(repo, "partial", monkeypatch)
    assert result.text == "hello"
    assert "".join(e.text for e in events if e.type == "text") == "hello"
    assert any(e.type == "notice" and "compacted" in e.text for e in events)


def test_chatty_stderr(repo, fake_env, monkeypatch) -> None:
    result, events = run(repo, "stderr_flood", monkeypatch)
    assert result.status == "completed"
    assert sum(1 for e in events if e.type == "stderr") == 200  # capped; a notice says so


def test_fake_rejects_stream_json_without_verbose(fake_env) -> None:
    proc = subprocess.run([sys.executable, str(FAKES / "claude"), "-p", "--output-format",
                           "stream-json"], input="hi", capture_output=True, text=True)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.strip() == (
        "Error: When using --print, --output-format=stream-json requires --verbose")
    bad_sid = subprocess.run([sys.executable, str(FAKES / "claude"), "-p", "--session-id", "x"],
                             input="hi", capture_output=True, text=True)
    assert bad_sid.returncode == 1 and "UUID" in bad_sid.stderr
    as_json = subprocess.run([sys.executable, str(FAKES / "claude"), "-p", "--output-format",
                              "json"], input="hi", capture_output=True, text=True)
    assert json.loads(as_json.stdout)["type"] == "result"


def test_claude_missing_from_path(repo, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(repo))  # no claude here
    backend = ClaudeBackend()
    with pytest.raises(AgentUnavailable, match="not found on PATH.*npm install"):
        backend.check_available()
    result = anyio.run(backend.run, AgentRequest(role=AgentRole.WORKER, prompt="x", workdir=repo))
    assert result.failure_reason == FailureReason.NOT_FOUND
    ClaudeBackend(executable=str(FAKES / "claude")).check_available()


def test_a_retried_request_gets_a_fresh_session_id(repo, fake_env, monkeypatch) -> None:
    monkeypatch.setenv("FAKE_CLAUDE_SCENARIO", "success")
    backend = ClaudeBackend(env_passthrough=["FAKE_CLAUDE_*"], kill_grace=0.5)
    request = AgentRequest(role=AgentRole.PLANNER, prompt="plan", workdir=repo)
    first = anyio.run(backend.run, request)
    second = anyio.run(backend.run, request)
    assert first.ok and second.ok and first.session_id != second.session_id
    assert request.session_id is None  # the request is not modified
    request.session_id = "0f0e0d0c-0b0a-4909-8807-060504030201"
    assert anyio.run(backend.run, request).session_id == request.session_id


def test_claude_missing_stops_the_mission_at_start(repo, monkeypatch, tmp_path) -> None:
    from engine.config import MissionConfig
    from engine.controller import Controller, MissionSetupError
    from engine.store import Store

    monkeypatch.setenv("PATH", "/nonexistent-bin")  # git is not needed before the check
    config = MissionConfig(target={"path": str(repo), "objective": "add subtract"},
                           agent={"backend": "claude"})
    store = Store(tmp_path / "state" / "mission.db")
    try:
        with pytest.raises(MissionSetupError, match="`claude` was not found on PATH.*npm install"):
            Controller(config, store).prepare()
        assert store.rows("missions") == [] and store.rows("attempts") == []
    finally:
        store.close()


def test_result_line_is_terminal_even_if_the_cli_lingers(repo, fake_env, monkeypatch,
                                                         tmp_path) -> None:
    """After its result the CLI gets result_grace seconds, then its whole group is ended;
    the session is not held until session_timeout (here 60 s)."""
    pidfile = tmp_path / "grandchild.pid"
    monkeypatch.setenv("FAKE_CLAUDE_IGNORE_TERM", "1")
    monkeypatch.setenv("FAKE_CLAUDE_CHILD_PIDFILE", str(pidfile))
    monkeypatch.setenv("FAKE_CLAUDE_SCENARIO", "result_then_hang")
    backend = ClaudeBackend(env_passthrough=["FAKE_CLAUDE_*"], kill_grace=0.5, result_grace=0.5)
    request = AgentRequest(role=AgentRole.WORKER, prompt="p", workdir=repo, timeout_s=60)
    started = time.monotonic()
    result = anyio.run(backend.run, request)
    assert time.monotonic() - started < 6
    assert result.status == "completed" and result.failure_reason is None
    assert result.cost_usd == pytest.approx(0.0421) and not result.cost_estimated
    leader = json.loads(fake_env.read_text())["pid"]
    for pid in (leader, int(pidfile.read_text())):
        stat = Path(f"/proc/{pid}/stat")
        assert not stat.exists() or stat.read_text().split(") ")[1][0] in "ZX", pid


def test_denied_calls_are_reported(repo, fake_env, monkeypatch) -> None:
    """A Write under .git and a commit without a Bash rule are refused like the real CLI
    refuses them; the result lists both and says so in its error."""
    edits = [{"path": ".git/mc/pool/slot-1/a.py", "content": "x = 1\n"},
             {"path": "ok.py", "content": "y = 2\n"}]
    monkeypatch.setenv("FAKE_CLAUDE_EDITS", json.dumps(edits))
    monkeypatch.setenv("FAKE_CLAUDE_COMMIT", "Add a")
    result, events = run(repo, "success", monkeypatch, allowed_tools=["Read"])
    assert result.status == "completed"  # the CLI says success, exit 0
    assert result.denials == [f"Write {repo}/.git/mc/pool/slot-1/a.py",
                              "Bash(git add -A && git commit -q -m 'Add a')"]
    assert result.error == (f"agent was denied: Write {repo}/.git/mc/pool/slot-1/a.py, "
                            "Bash(git add -A && git commit -q -m 'Add a')")
    refused = [e for e in events if e.type == "tool_result" and e.data["is_error"]]
    assert "which is a sensitive file" in refused[0].text
    assert "The following parts require approval: git add -A, git commit" in refused[1].text
    assert not (repo / ".git/mc/pool/slot-1/a.py").exists() and (repo / "ok.py").exists()
    notice = [e for e in events if e.type == "notice" and "denied" in e.text]
    assert notice and notice[0].data["permission_denials"] == 2
