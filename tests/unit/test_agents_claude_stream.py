"""The stream-json parser against the captured line shapes of agent-protocols.md."""

from __future__ import annotations

import json

import pytest

from engine.agents.claude_stream import ClaudeStreamParser, classify_failure
from engine.agents.types import FailureReason

SID = "c33cee68-7fa0-4926-b32e-c1ad457673ea"
INIT = (
    '{"type":"system","subtype":"init","cwd":"/home/u/proj","session_id":"' + SID + '",'
    '"tools":["Task","Bash","Edit","Read","Write","WebFetch","WebSearch"],"mcp_servers":[],'
    '"model":"claude-sonnet-4-6","permissionMode":"default","slash_commands":["compact"],'
    '"apiKeySource":"none","claude_code_version":"2.1.195","output_style":"default",'
    '"agents":["Explore"],"skills":[],"plugins":[],"uuid":"9f605e3a","fast_mode_state":"off"}'
)
USAGE = ('{"input_tokens":2,"cache_creation_input_tokens":20333,"cache_read_input_tokens":0,'
         '"cache_creation":{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":20333},'
         '"output_tokens":1,"service_tier":"standard"}')


def assistant(block: dict, msg_id: str = "msg_011CcoMohKeVVbHLgCVVjcDy", usage: str = USAGE) -> str:
    return (
        '{"type":"assistant","message":{"model":"claude-sonnet-4-6","id":"' + msg_id + '",'
        '"type":"message","role":"assistant","content":[' + json.dumps(block) + '],'
        '"stop_reason":null,"stop_sequence":null,"usage":' + usage + '},'
        '"parent_tool_use_id":null,"session_id":"' + SID + '","uuid":"4a79959d"}'
    )


SUCCESS = (
    '{"type":"result","subtype":"success","is_error":false,"api_error_status":null,'
    '"duration_ms":2118,"duration_api_ms":3091,"num_turns":1,"result":"hello",'
    '"stop_reason":"end_turn","session_id":"' + SID + '","total_cost_usd":0.122623,'
    '"usage":{"input_tokens":2,"cache_creation_input_tokens":20333,"cache_read_input_tokens":0,'
    '"output_tokens":4,"server_tool_use":{"web_search_requests":0,"web_fetch_requests":0},'
    '"service_tier":"standard","cache_creation":{"ephemeral_1h_input_tokens":20333,'
    '"ephemeral_5m_input_tokens":0}},"modelUsage":{"claude-haiku-4-5-20251001":{"inputTokens":504,'
    '"outputTokens":11,"cacheReadInputTokens":0,"cacheCreationInputTokens":0,"webSearchRequests":0,'
    '"costUSD":0.000559,"contextWindow":200000,"maxOutputTokens":32000},"claude-sonnet-4-6":'
    '{"inputTokens":2,"outputTokens":4,"cacheReadInputTokens":0,"cacheCreationInputTokens":20333,'
    '"webSearchRequests":0,"costUSD":0.122064,"contextWindow":200000,"maxOutputTokens":32000}},'
    '"permission_denials":[],"terminal_reason":"completed","fast_mode_state":"off","uuid":"cf35"}'
)


def feed_all(parser: ClaudeStreamParser, lines: list[str]) -> list:
    events = []
    for line in lines:
        events += parser.feed(line)
    return events


def test_real_success_capture() -> None:
    parser = ClaudeStreamParser(model="sonnet")
    events = feed_all(parser, [INIT, assistant({"type": "text", "text": "hello"}), SUCCESS])
    assert [e.type for e in events] == ["init", "text", "usage"]
    assert events[0].data["model"] == "claude-sonnet-4-6"
    result = parser.finish(exit_code=0)
    assert result.status == "completed" and result.failure_reason is None
    assert result.text == "hello" and result.session_id == SID
    assert result.cost_usd == pytest.approx(0.122623) and not result.cost_estimated
    # tokens: modelUsage summed over both models
    assert result.tokens.input == 506 and result.tokens.output == 15
    assert result.tokens.cache_write == 20333 and result.turns == 1


def test_blocks_of_one_message_do_not_double_count_usage() -> None:
    parser = ClaudeStreamParser()
    lines = [
        INIT,
        assistant({"type": "thinking", "thinking": "hmm", "signature": "Eq"}),
        assistant({"type": "text", "text": "I'll list files"}),
        assistant({"type": "tool_use", "id": "toolu_01", "name": "Bash",
                   "input": {"command": "ls -la", "description": "List files"}}),
        '{"type":"user","message":{"role":"user","content":[{"tool_use_id":"toolu_01",'
        '"type":"tool_result","content":"total 16\\nfileA.txt","is_error":false}]},'
        '"parent_tool_use_id":null,"session_id":"' + SID + '","uuid":"25d4",'
        '"tool_use_result":{"stdout":"total 16\\nfileA.txt","stderr":"","interrupted":false,'
        '"isImage":false}}',
        assistant({"type": "text", "text": "done"}, msg_id="msg_second",
                   usage='{"input_tokens":10,"output_tokens":5}'),
    ]
    events = feed_all(parser, lines)
    kinds = [e.type for e in events]
    assert kinds == ["init", "thinking", "usage", "text", "tool_use", "tool_result", "text", "usage"]
    tool_result = events[5]
    assert tool_result.tool == "Bash" and "fileA.txt" in tool_result.text
    assert events[4].tool == "Bash" and "ls -la" in events[4].text
    tokens = parser.tokens_so_far()
    assert (tokens.input, tokens.output, tokens.cache_write) == (12, 6, 20333)
    # killed before the result line: the cost is a marked estimate from usage x prices
    result = parser.finish(exit_code=None, timed_out=True, requested_model="sonnet")
    assert result.status == "timeout" and result.failure_reason == FailureReason.TIMEOUT
    assert result.cost_estimated and result.cost_usd == pytest.approx(
        (12 * 3 + 6 * 15 + 20333 * 3 * 1.25) / 1e6, rel=1e-3)
    assert result.turns == 2 and result.text == "done"


def result_line(**fields: object) -> str:
    base = {"type": "result", "subtype": "success", "is_error": False, "session_id": SID,
            "num_turns": 2, "total_cost_usd": 0.01, "permission_denials": []}
    base.update(fields)
    return json.dumps(base)


@pytest.mark.parametrize(
    ("fields", "status", "reason"),
    [
        ({"subtype": "error_max_turns", "is_error": True, "terminal_reason": "max_turns",
          "errors": ["Reached maximum number of turns (1)"]}, "failed", FailureReason.MAX_TURNS),
        ({"subtype": "error_max_budget_usd", "is_error": True,
          "errors": ["Reached maximum budget ($0.01)"]}, "budget", FailureReason.BUDGET),
        # an older capture has is_error false on the budget subtype: still the budget
        ({"subtype": "error_max_budget_usd", "is_error": False}, "budget", FailureReason.BUDGET),
        ({"is_error": True, "api_error_status": None,
          "result": "Not logged in \u00b7 Please run /login"}, "error", FailureReason.AUTH),
        ({"is_error": True, "api_error_status": 401,
          "result": "Invalid API key \u00b7 Please run /login"}, "error", FailureReason.AUTH),
        ({"is_error": True, "api_error_status": 429, "terminal_reason": "api_error",
          "result": "You've hit your session limit \u00b7 resets 3:43am (UTC)"},
         "error", FailureReason.USAGE_LIMIT),
        ({"is_error": True, "api_error_status": 429, "result": "API Error: 429 rate limited"},
         "error", FailureReason.RATE_LIMIT),
        ({"is_error": True, "api_error_status": 529, "result": "API Error: 529 Overloaded."},
         "error", FailureReason.OVERLOADED),
        ({"subtype": "error_during_execution", "is_error": False,
          "errors": ["API Error: Overloaded"]}, "error", FailureReason.OVERLOADED),
        ({"subtype": "error_during_execution", "is_error": True, "errors": ["boom"]},
         "error", FailureReason.API_ERROR),
        ({"is_error": True, "api_error_status": 500, "result": "API Error: 500"},
         "error", FailureReason.API_ERROR),
        ({"subtype": "error_max_structured_output_retries", "is_error": True},
         "failed", FailureReason.BAD_OUTPUT),
    ],
)
def test_result_subtypes_and_failures(fields: dict, status: str, reason: FailureReason) -> None:
    parser = ClaudeStreamParser()
    feed_all(parser, [INIT, result_line(**fields)])
    result = parser.finish(exit_code=1)
    assert (result.status, result.failure_reason) == (status, reason)
    assert result.error


def test_success_subtype_with_is_error_is_a_failure_even_with_exit_zero() -> None:
    parser = ClaudeStreamParser()
    feed_all(parser, [result_line(is_error=True, api_error_status=401, result="Invalid API key")])
    assert parser.finish(exit_code=0).failure_reason == FailureReason.AUTH


def test_result_line_wins_over_exit_code() -> None:
    parser = ClaudeStreamParser()
    feed_all(parser, [result_line(result="all good")])
    result = parser.finish(exit_code=1)
    assert result.status == "completed" and result.text == "all good"


def test_retry_rate_limit_compact_and_stream_events() -> None:
    parser = ClaudeStreamParser()
    lines = [
        INIT,
        '{"type":"system","subtype":"api_retry","attempt":1,"max_retries":10,"retry_delay_ms":600,'
        '"error_status":529,"error":"overloaded","session_id":"x","uuid":"u"}',
        '{"type":"rate_limit_event","rate_limit_info":{"status":"allowed_warning",'
        '"resetsAt":1791344624,"rateLimitType":"five_hour"},"uuid":"u","session_id":"x"}',
        '{"type":"system","subtype":"compact_boundary","compact_metadata":{"trigger":"auto"}}',
        '{"type":"stream_event","event":{"type":"content_block_delta","index":0,'
        '"delta":{"type":"text_delta","text":"hel"}},"session_id":"x","parent_tool_use_id":null}',
        '{"type":"stream_event","event":{"type":"message_start","message":{}}}',
        assistant({"type": "text", "text": "hello"}),
    ]
    events = feed_all(parser, lines)
    kinds = [e.type for e in events]
    assert kinds == ["init", "retry", "rate_limit", "notice", "text", "usage"]
    assert events[1].data["error_status"] == 529 and "overloaded" in events[1].text
    assert events[3].text == "context compacted"
    assert events[4].data["delta"] is True  # the full block is not re-emitted after deltas
    assert parser.last_text() == "hello"


def test_unknown_and_garbage_lines_are_ignored() -> None:
    parser = ClaudeStreamParser()
    events = feed_all(parser, [
        "not json", "[1,2]", '{"type":"assistant","message":{"id":"m","content":[{"ty',
        '{"type":"future_thing","x":1}', '{"type":"system","subtype":"hook_started"}',
        '{"type":"assistant","message":"not a dict"}', '{"type":"user","message":{"content":"x"}}',
        '{"type":"assistant","message":{"id":"m2","content":[{"type":"new_block"},5,'
        '{"type":"text","text":"ok","extra":1}],"usage":"weird"}}', "",
    ])
    assert [e.type for e in events] == ["notice", "notice", "notice", "text"]
    assert parser.unknown_lines == 1 and parser.bad_lines == 3
    notice = parser.feed("x" * 10, truncated=True, size=2_000_000)
    assert notice[0].type == "notice" and "2000000" in notice[0].text


def test_no_result_line() -> None:
    parser = ClaudeStreamParser()
    feed_all(parser, [INIT])
    crashed = parser.finish(exit_code=3, stderr_tail="TypeError: x\n")
    assert crashed.status == "error" and crashed.failure_reason == FailureReason.CRASH
    assert "TypeError" in crashed.error and "code 3" in crashed.error
    assert ClaudeStreamParser().finish(exit_code=0).failure_reason == FailureReason.BAD_OUTPUT
    assert ClaudeStreamParser().finish(exit_code=None, cancelled=True).failure_reason == (
        FailureReason.CANCELLED)
    auth = ClaudeStreamParser().finish(exit_code=1, stderr_tail="Invalid API key")
    assert auth.failure_reason == FailureReason.AUTH


def test_classify_failure_priorities() -> None:
    assert classify_failure(None, "", retry_error="authentication_failed") == FailureReason.AUTH
    assert classify_failure(429, "", limit_rejected=True) == FailureReason.USAGE_LIMIT
    assert classify_failure(None, "You've hit your limit \u00b7 resets 1pm") == (
        FailureReason.USAGE_LIMIT)
    assert classify_failure(None, "weird") == FailureReason.API_ERROR


def test_plan_mode_plan_and_permission_denials() -> None:
    parser = ClaudeStreamParser()
    feed_all(parser, [INIT, assistant({"type": "tool_use", "id": "toolu_9", "name": "ExitPlanMode",
                                       "input": {"plan": "1. edit calc.py\n2. add tests"}})])
    events = parser.feed(result_line(result="Plan ready.", permission_denials=[
        {"tool_name": "ExitPlanMode", "tool_use_id": "toolu_9", "tool_input": {}}]))
    assert events[0].type == "notice" and "ExitPlanMode" in events[0].text
    result = parser.finish(exit_code=0)
    assert result.ok and result.text == "Plan ready.\n\n1. edit calc.py\n2. add tests"
