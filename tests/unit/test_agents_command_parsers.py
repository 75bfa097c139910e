"""Output parsers of codex, gemini and aider: real captured transcripts first
(``tests/fixtures/agent_output/``), then documented shapes the captures do not cover."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.agents.command import (
    GEMINI_P,
    fill_template,
    gemini_policy,
    price_model,
    shell_prefixes,
    tool_argv,
)
from engine.agents.command_parsers import (
    AiderParser,
    CodexParser,
    GeminiParser,
    OutputParser,
    parse_count,
)
from engine.agents.pricing import estimate_cost
from engine.agents.types import AgentRequest, AgentRole, FailureReason, TokenUsage

REAL = Path(__file__).resolve().parents[1] / "fixtures" / "agent_output"


def replay(parser: OutputParser, name: str) -> list:
    """Feed a real transcript to ``parser`` line by line; the events it gave."""
    events = []
    for line in (REAL / name).read_text().splitlines():
        events += parser.feed(line)
    return events


def test_real_codex_worker_session() -> None:
    parser = CodexParser(model="gpt-5")
    events = replay(parser, "codex_worker.jsonl")
    assert [e.type for e in events] == ["init", "notice", "tool_use", "tool_result", "tool_use",
                                        "tool_result", "text", "usage"]
    assert parser.terminal  # turn.completed is the last line
    result = parser.finish(exit_code=0)
    assert result.status == "completed" and result.text.startswith("Done. <mc-result>")
    assert result.session_id == "01a22ace-5823-7ed1-b998-e70fcfaf825b"
    # usage of 0.171: input 400 of which 80 cached, cache_write 0, output 40 (over 4 requests)
    assert (result.tokens.input, result.tokens.cache_read, result.tokens.output) == (320, 80, 40)
    assert result.cost_estimated and result.cost_usd == estimate_cost("gpt-5", result.tokens)
    assert events[2].text.startswith('/bin/bash -lc "printf') and events[3].data["exit_code"] == 0
    # the sandbox refused `git commit` (.git is read-only) and codex printed nothing for it
    assert result.denials == []


def test_real_codex_rollout_names_what_the_sandbox_refused(tmp_path: Path) -> None:
    """The refused `git commit` is missing from the --json stream but not from the rollout."""
    from engine.agents.command_parsers import codex_rollout_denials

    lines = (REAL / "codex_worker_rollout.jsonl").read_text().splitlines()
    denied = 'shell(git add -A && git commit -m "add sub" && git log --oneline | head -3)'
    assert codex_rollout_denials(lines) == [denied]
    parser = CodexParser(model="gpt-5")
    replay(parser, "codex_worker.jsonl")
    day = tmp_path / "sessions" / "2026" / "11" / "30"
    day.mkdir(parents=True)
    (day / f"rollout-2026-11-30T04-54-55-{parser.session_id}.jsonl").write_text("\n".join(lines))
    (day / "rollout-2026-11-30T04-54-55-another-thread.jsonl").write_text("\n".join(lines))
    parser.read_rollout(tmp_path)
    parser.read_rollout(tmp_path / "missing")
    assert parser.finish(exit_code=0).denials == [denied]


def test_codex_rollout_refused_apply_patch_is_a_denial() -> None:
    from engine.agents.command_parsers import codex_rollout_denials

    def item(payload: dict) -> str:
        return json.dumps({"type": "response_item", "payload": payload})

    lines = [
        item({"type": "custom_tool_call", "name": "apply_patch", "call_id": "c1",
              "input": "*** Begin Patch\n*** Add File: hello.py\n+x\n*** End Patch\n"}),
        item({"type": "custom_tool_call_output", "call_id": "c1", "output":
              "patch rejected: writing is blocked by read-only sandbox; rejected by user "
              "approval settings"}),
        item({"type": "custom_tool_call", "name": "apply_patch", "call_id": "c2",
              "input": "*** Begin Patch\n*** Update File: ok.py\n*** End Patch\n"}),
        item({"type": "custom_tool_call_output", "call_id": "c2", "output": "Success."}),
        "not json",
    ]
    assert codex_rollout_denials(lines) == ["apply_patch hello.py"]


def test_real_codex_auth_error() -> None:
    parser = CodexParser(model="gpt-5")
    replay(parser, "codex_auth_error.jsonl")
    result = parser.finish(exit_code=1)
    assert (result.status, result.failure_reason) == ("error", FailureReason.AUTH)
    assert "401 Unauthorized" in result.error


def test_codex_sandbox_refusal_in_a_command_is_a_denial() -> None:
    parser = CodexParser(model="gpt-5")
    parser.feed(json.dumps({"type": "item.completed", "item": {
        "id": "item_1", "type": "command_execution",
        "command": "/bin/bash -lc 'git commit -m x'", "exit_code": 128, "status": "failed",
        "aggregated_output": "fatal: Unable to create '/r/.git/index.lock': Read-only file system\n"}}))
    assert parser.finish(exit_code=0).denials == ["shell(git commit -m x)"]


def test_real_gemini_worker_session_with_denials() -> None:
    parser = GeminiParser(model="gemini-2.5-pro")
    events = replay(parser, "gemini_worker.jsonl")
    kinds = [e.type for e in events]
    assert kinds[0] == "init" and kinds.count("tool_use") == 5 and kinds[-1] == "usage"
    assert parser.terminal
    result = parser.finish(exit_code=0)
    assert result.status == "completed" and result.text.startswith("Done. <mc-result>")
    assert result.denials == ["run_shell_command(rm -f calc.py)",
                              "write_file /tmp/obs/g-outside.txt"]
    denied = [e for e in events if e.type == "tool_result" and e.data["is_error"]]
    assert denied[0].text == "Tool execution denied by policy." and denied[0].tool == "run_shell_command"
    # stats: input_tokens 600 includes cached 180; priced per model of stats.models
    assert (result.tokens.input, result.tokens.cache_read, result.tokens.output) == (420, 180, 60)
    assert result.cost_estimated
    assert result.cost_usd == estimate_cost("gemini-2.5-flash", TokenUsage(420, 60, 180))


def test_gemini_confirmation_needed_is_a_denial() -> None:
    """default mode, an allowed command with a redirection (measured on 0.61.0)."""
    parser = GeminiParser(model="gemini-2.5-flash")
    message = ('Tool execution for "Shell" requires user confirmation, which is not supported '
               "in non-interactive mode.")
    feed(parser, [
        {"type": "tool_use", "tool_name": "run_shell_command", "tool_id": "t1",
         "parameters": {"command": "git status > x.txt"}},
        {"type": "tool_result", "tool_id": "t1", "status": "error", "output": message,
         "error": {"type": "unhandled_exception", "message": message}},
        {"type": "tool_use", "tool_name": "run_shell_command", "tool_id": "t3",
         "parameters": {"command": "ls"}},
        {"type": "tool_result", "tool_id": "t3", "status": "error", "error": {
            "type": "tool_not_registered", "message": 'Tool "run_shell_command" not found.'}},
        {"type": "tool_use", "tool_name": "read_file", "tool_id": "t2",
         "parameters": {"file_path": "nope.py"}},
        {"type": "tool_result", "tool_id": "t2", "status": "error",
         "error": {"type": "file_not_found", "message": "File not found: nope.py"}},
    ])
    assert parser.finish(exit_code=0).denials == ["run_shell_command(git status > x.txt)",
                                                  "run_shell_command(ls)"]


def test_real_gemini_auth_error_exit_145() -> None:
    parser = GeminiParser(model="gemini-2.5-flash")
    replay(parser, "gemini_auth_error.jsonl")
    result = parser.finish(exit_code=145)
    assert (result.status, result.failure_reason) == ("error", FailureReason.AUTH)
    assert "UNAUTHENTICATED" in result.error


def test_real_aider_worker_session() -> None:
    parser = AiderParser(model="openai/gpt-4o")
    events = replay(parser, "aider_worker.txt")
    usage = [e for e in events if e.type == "usage"]
    assert len(usage) == 1 and "Cost: $0.00035 message" in usage[0].text
    assert events[-1].text == "Applied edit to sub.py"
    result = parser.finish(exit_code=0)
    assert result.status == "completed" and "<mc-result>" in result.text
    assert result.cost_usd == pytest.approx(0.00035) and not result.cost_estimated
    assert (result.tokens.input, result.tokens.output, result.turns) == (100, 10, 1)


def test_real_aider_auth_error_exits_0_but_fails() -> None:
    parser = AiderParser(model="openai/gpt-4o")
    replay(parser, "aider_auth_error.txt")
    result = parser.finish(exit_code=0)
    assert (result.status, result.failure_reason) == ("error", FailureReason.AUTH)
    assert result.error.startswith("exited with code 0: AuthenticationError")


def test_aider_retried_rate_limit_is_not_a_failure() -> None:
    parser = AiderParser(model="openai/gpt-4o")
    for line in ["litellm.RateLimitError: RateLimitError: OpenAIException - Rate limit reached",
                 "Retrying in 0.2 seconds...", "All done.",
                 "Tokens: 100 sent, 10 received. Cost: $0.00035 message, $0.00035 session."]:
        parser.feed(line)
    assert parser.finish(exit_code=0).status == "completed"

CODEX = [
    {"type": "thread.started", "thread_id": "0199a213-81c0-7800-8aa1-bbab2a035a53"},
    {"type": "turn.started"},
    {"type": "item.started", "item": {"id": "item_1", "type": "command_execution",
                                      "command": "bash -lc ls", "status": "in_progress"}},
    {"type": "item.completed", "item": {"id": "item_1", "type": "command_execution",
                                        "command": "bash -lc ls", "aggregated_output": "calc.py\n",
                                        "exit_code": 0, "status": "completed"}},
    {"type": "item.completed", "item": {"id": "item_2", "type": "reasoning", "text": "**Plan**"}},
    {"type": "item.completed", "item": {"id": "item_3", "type": "file_change", "status": "completed",
                                        "changes": [{"path": "calc.py", "kind": "update"}]}},
    {"type": "item.completed", "item": {"id": "item_4", "item_type": "assistant_message",
                                        "text": "older format"}},
    {"type": "item.completed", "item": {"id": "item_5", "type": "agent_message", "text": "Done."}},
    {"type": "turn.completed", "usage": {"input_tokens": 24763, "cached_input_tokens": 24448,
                                         "output_tokens": 122}},
]


def feed(parser: OutputParser, lines: list) -> list:
    events = []
    for line in lines:
        events += parser.feed(line if isinstance(line, str) else json.dumps(line))
    return events


def test_codex_events_usage_and_estimated_cost() -> None:
    parser = CodexParser(model="gpt-5")
    events = feed(parser, [*CODEX, "garbage"])
    kinds = [e.type for e in events]
    assert kinds == ["init", "tool_use", "tool_result", "thinking", "tool_use", "tool_result",
                     "text", "text", "usage", "notice"]
    result = parser.finish(exit_code=0)
    assert result.status == "completed" and result.text == "Done."
    assert result.session_id == "0199a213-81c0-7800-8aa1-bbab2a035a53"
    assert (result.tokens.input, result.tokens.cache_read, result.tokens.output) == (315, 24448, 122)
    assert result.cost_estimated and result.cost_usd == pytest.approx(
        (315 * 1.25 + 122 * 10 + 24448 * 0.125) / 1e6, rel=1e-3)
    assert result.turns == 1


def test_codex_turn_failed_and_unknown_model_cost() -> None:
    parser = CodexParser(model="some-local-model")
    feed(parser, [CODEX[0], {"type": "error", "message": "Reconnecting... 1/5"},
                  {"type": "turn.failed", "error": {"message": "429 Too Many Requests"}}])
    result = parser.finish(exit_code=1)
    assert result.status == "error" and result.failure_reason == FailureReason.RATE_LIMIT
    assert "429" in result.error and result.cost_usd is None


def test_gemini_stream_json() -> None:
    parser = GeminiParser(model="gemini-2.5-pro")
    lines = [
        {"type": "init", "timestamp": "t", "session_id": "s-1", "model": "auto"},
        {"type": "message", "timestamp": "t", "role": "user", "content": "do it"},
        {"type": "message", "timestamp": "t", "role": "assistant", "content": "Wor", "delta": True},
        {"type": "message", "timestamp": "t", "role": "assistant", "content": "king", "delta": True},
        {"type": "tool_use", "tool_name": "write_file", "tool_id": "t1",
         "parameters": {"file_path": "a.py"}},
        {"type": "tool_result", "tool_id": "t1", "status": "success", "output": "ok"},
        {"type": "result", "status": "success",
         "stats": {"total_tokens": 300, "input_tokens": 250, "output_tokens": 50, "cached": 100,
                   "input": 150, "duration_ms": 10, "tool_calls": 1}},
    ]
    events = feed(parser, lines)
    assert [e.type for e in events] == ["init", "text", "text", "tool_use", "tool_result", "usage"]
    result = parser.finish(exit_code=0)
    assert result.status == "completed" and result.text == "Working"
    assert (result.tokens.input, result.tokens.output, result.tokens.cache_read) == (150, 50, 100)
    assert result.cost_estimated and result.cost_usd is not None


@pytest.mark.parametrize(("code", "reason"), [(41, FailureReason.AUTH), (53, FailureReason.MAX_TURNS)])
def test_gemini_exit_codes(code: int, reason: FailureReason) -> None:
    parser = GeminiParser()
    feed(parser, [{"type": "result", "status": "error",
                   "error": {"type": "x", "message": "nope"}, "stats": {}}])
    result = parser.finish(exit_code=code)
    assert result.failure_reason == reason and "nope" in result.error


def test_aider_text_tokens_and_cost() -> None:
    parser = AiderParser(model="sonnet")
    events = feed(parser, [
        "Aider v0.86.0", "Applied edit to calc.py",
        "Tokens: 12k sent, 1.5k cache write, 2.1k cache hit, 345 received. "
        "Cost: $0.05 message, $0.07 session.",
    ])
    assert [e.type for e in events] == ["text", "text", "text", "usage"]
    result = parser.finish(exit_code=0)
    assert result.cost_usd == pytest.approx(0.07) and not result.cost_estimated
    assert (result.tokens.input, result.tokens.output) == (12000, 345)
    assert (result.tokens.cache_write, result.tokens.cache_read) == (1500, 2100)
    assert parse_count("3M") == 3_000_000 and parse_count("12") == 12 and parse_count("x") == 0


def test_plain_template_cost_is_unknown() -> None:
    parser = OutputParser(model="whatever")
    feed(parser, ["hello", "", "world"])
    result = parser.finish(exit_code=0)
    assert result.status == "completed" and result.cost_usd is None and not result.cost_estimated
    assert result.text == "hello\n\nworld"
    failed = OutputParser().finish(exit_code=2, stderr_tail="boom")
    assert failed.status == "failed" and failed.failure_reason == FailureReason.CRASH
    assert "boom" in failed.error
    timed = OutputParser().finish(exit_code=-15, timed_out=True)
    assert timed.status == "timeout"


def test_argv_templates() -> None:
    request = AgentRequest(role=AgentRole.PLANNER, prompt="p", workdir=Path("/w"),
                           model="sonnet", read_only=True, permission_mode="plan")
    assert tool_argv("codex", request) == [
        "codex", "exec", "--json", "--color", "never", "--skip-git-repo-check",
        "--sandbox", "read-only", "-c", 'approval_policy="never"', "-"]
    gemini = tool_argv("gemini", request)
    assert gemini == ["gemini", "-p", GEMINI_P, "-o", "stream-json", "--skip-trust",
                      "--approval-mode", "plan"]
    aider = tool_argv("aider", request)
    assert aider[:3] == ["aider", "--message-file", "{prompt_file}"] and "--yes-always" in aider
    assert aider[-4:] == ["--chat-mode", "ask", "--model", "sonnet"] and "--auto-test" not in aider
    worker = AgentRequest(role=AgentRole.WORKER, prompt="p", workdir=Path("/w"), model="gpt-5",
                          permission_mode="acceptEdits", verify_command="make check",
                          allowed_tools=["Read", "Bash(make check:*)", "Bash(git commit:*)"])
    assert tool_argv("codex", worker)[6:] == [
        "--sandbox", "workspace-write", "-c", 'approval_policy="never"', "-m", "gpt-5", "-"]
    gemini = tool_argv("gemini", worker, "/tmp/policy.toml")
    assert gemini[gemini.index("--approval-mode") + 1:] == [
        "default", "--policy", "/tmp/policy.toml", "-m", "gpt-5"]
    aider = tool_argv("aider", worker)
    assert aider[aider.index("--test-cmd") - 1:aider.index("--test-cmd") + 2] == [
        "--auto-test", "--test-cmd", "make check"]
    for own in ("--no-auto-commits", "--no-gitignore", "--chat-history-file"):
        assert own in aider
    assert price_model("codex", "sonnet") == "gpt-5" and price_model("codex", "o4-mini") == "o4-mini"
    assert price_model("gemini", "claude-opus-4-6") == "gemini-2.5-pro"
    assert price_model("aider", "sonnet") == "sonnet"
    assert fill_template(["t", "{prompt_file}", "--cwd={workdir}", "{model}", "{other}"],
                         prompt_file="/tmp/p", workdir="/w", model="m") == [
        "t", "/tmp/p", "--cwd=/w", "m", "{other}"]


def test_codex_and_aider_workers_are_told_mc_commits_for_them() -> None:
    from engine.agents.command import prompt_text

    worker = AgentRequest(role=AgentRole.WORKER, prompt="Do it.", workdir=Path("/w"),
                          system_prompt="Role.")
    assert prompt_text("codex", worker).startswith("Role.\n\nDo it.\n\nNote from Mission Control")
    assert "read-only" in prompt_text("codex", worker)
    assert "cannot run commands" in prompt_text("aider", worker)
    assert prompt_text("gemini", worker) == "Role.\n\nDo it."  # its policy allows git commit
    planner = AgentRequest(role=AgentRole.PLANNER, prompt="Plan.", workdir=Path("/w"),
                           read_only=True, permission_mode="plan")
    assert prompt_text("codex", planner) == "Plan."


def test_bypass_is_opt_in_and_never_for_read_only_roles() -> None:
    worker = AgentRequest(role=AgentRole.WORKER, prompt="p", workdir=Path("/w"),
                          permission_mode="bypassPermissions")
    assert "--dangerously-bypass-approvals-and-sandbox" in tool_argv("codex", worker)
    assert tool_argv("gemini", worker)[-2:] == ["--approval-mode", "yolo"]
    worker.read_only = True
    assert "--dangerously-bypass-approvals-and-sandbox" not in tool_argv("codex", worker)
    assert tool_argv("gemini", worker)[-2:] == ["--approval-mode", "plan"]


def test_gemini_policy_allows_the_profile_shell_prefixes() -> None:
    import tomllib

    request = AgentRequest(role=AgentRole.WORKER, prompt="p", workdir=Path("/w"), allowed_tools=[
        "Read", "Write", "Bash(uv run pytest:*)", "Bash(git commit *)", "Bash(git add:*)"])
    assert shell_prefixes(request) == ["uv run pytest", "git commit", "git add"]
    rules = tomllib.loads(gemini_policy(request))["rule"]
    assert [r["toolName"] for r in rules] == ["write_file", "replace", "run_shell_command"]
    assert all(r["decision"] == "allow" and r["priority"] == 100 for r in rules)
    assert rules[2]["commandPrefix"] == [
        "uv run pytest", "git commit", "git add", "cd", "pwd", "ls", "cat", "head", "tail",
        "grep", "wc"]
    bare = AgentRequest(role=AgentRole.WORKER, prompt="p", workdir=Path("/w"))
    assert "git commit" in shell_prefixes(bare)
