"""Output parsers of codex, gemini and aider (documented event shapes)."""

from __future__ import annotations

import json

import pytest

from engine.agents.command import GEMINI_P, fill_template, price_model, tool_argv
from engine.agents.command_parsers import (
    AiderParser,
    CodexParser,
    GeminiParser,
    OutputParser,
    parse_count,
)
from engine.agents.types import AgentRequest, AgentRole, FailureReason

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
    request = AgentRequest(role=AgentRole.WORKER, prompt="p", workdir=__import__("pathlib").Path("/w"),
                           model="sonnet", read_only=True)
    assert tool_argv("codex", request) == [
        "codex", "exec", "--json", "--skip-git-repo-check", "--sandbox", "read-only", "-"]
    request.model, request.read_only = "gpt-5", False
    assert tool_argv("codex", request)[-3:] == ["-m", "gpt-5", "-"]
    gemini = tool_argv("gemini", request)
    assert gemini[:5] == ["gemini", "-p", GEMINI_P, "-o", "stream-json"]
    assert gemini[gemini.index("--approval-mode") + 1] == "auto_edit"
    assert price_model("codex", "sonnet") == "gpt-5" and price_model("codex", "o4-mini") == "o4-mini"
    assert price_model("gemini", "claude-opus-4-6") == "gemini-2.5-pro"
    assert price_model("aider", "sonnet") == "sonnet"
    aider = tool_argv("aider", request)
    assert aider[:3] == ["aider", "--message-file", "{prompt_file}"] and "--yes-always" in aider
    assert fill_template(["t", "{prompt_file}", "--cwd={workdir}", "{model}", "{other}"],
                         prompt_file="/tmp/p", workdir="/w", model="m") == [
        "t", "/tmp/p", "--cwd=/w", "m", "{other}"]
