"""The stream-json parser on output captured from the real Claude Code 2.1.332.

The captures (``tests/unit/data/claude_2.1.332_*.jsonl``, trimmed) come from the CLI run
against the scripted model server (``docs/testing-real-clis.md``).
"""

from __future__ import annotations

import json
from pathlib import Path

from engine.agents.claude_stream import ClaudeStreamParser
from engine.agents.types import COMPLETED, ERROR, FAILED, FailureReason

DATA = Path(__file__).parent / "data"


def parse(name: str, exit_code: int = 1):
    parser = ClaudeStreamParser(model="sonnet")
    events = []
    for line in (DATA / name).read_text().splitlines():
        events += parser.feed(line)
    return parser.finish(exit_code=exit_code), events


def test_an_answer_over_the_output_limit_is_a_failed_session_not_an_api_error() -> None:
    result, _events = parse("claude_2.1.332_max_tokens.jsonl")
    assert result.status == FAILED and result.failure_reason == FailureReason.BAD_OUTPUT
    assert "exceeded the 128000 output token maximum" in (result.error or "")
    assert result.turns == 4 and result.cost_usd == 0.021786000000000003


def test_a_safety_refusal_is_a_failed_session_with_the_reason() -> None:
    result, events = parse("claude_2.1.332_refusal.jsonl")
    assert result.status == FAILED and result.failure_reason == FailureReason.BAD_OUTPUT
    assert (result.error or "").startswith("the model refused: API Error: Sonnet 5.5's safeguards")
    notices = [e.text for e in events if e.type == "notice"]
    assert "the model refused to answer" in notices
    assert any("safeguards stopped the response" in n for n in notices)  # system/informational


SID = "6f1c2a57-3f0e-4a8e-9d55-1f7c0f6b2d11"


def line(**fields) -> str:
    return json.dumps({"session_id": SID, **fields})


def synthetic(text: str, error: str) -> str:
    return line(type="assistant", error=error, is_api_error_message=True, message={
        "id": "x", "model": "<synthetic>", "role": "assistant", "type": "message",
        "content": [{"type": "text", "text": text}]})


def api_result(text: str, status: int | None) -> str:
    return line(type="result", subtype="success", is_error=True, api_error_status=status,
                result=text, num_turns=1, total_cost_usd=0, terminal_reason="api_error",
                permission_denials=[])


def test_the_final_error_code_wins_over_earlier_retries() -> None:
    parser = ClaudeStreamParser()
    for attempt in (1, 2):
        parser.feed(line(type="system", subtype="api_retry", attempt=attempt, max_retries=2,
                         retry_delay_ms=500, error_status=529, error="overloaded"))
    parser.feed(synthetic("API Error: Request rejected · try again later", "rate_limit"))
    parser.feed(api_result("API Error: Request rejected · try again later", None))
    result = parser.finish(exit_code=1)
    assert result.status == ERROR and result.failure_reason == FailureReason.RATE_LIMIT


def test_a_connection_lost_after_retries_stays_an_api_error() -> None:
    text = "API Error: Connection to the API was lost (ECONNRESET). This is usually temporary."
    parser = ClaudeStreamParser()
    parser.feed(line(type="system", subtype="api_retry", attempt=1, max_retries=1,
                     retry_delay_ms=500, error_status=None, error="unknown"))
    parser.feed(synthetic(text, "server_error"))
    parser.feed(api_result(text, None))
    result = parser.finish(exit_code=1)
    assert result.status == ERROR and result.failure_reason == FailureReason.API_ERROR
    assert result.error == text


def test_thinking_tokens_lines_are_ignored() -> None:
    parser = ClaudeStreamParser()
    events = parser.feed(line(type="system", subtype="thinking_tokens", estimated_tokens=2,
                              estimated_tokens_delta=2))
    parser.feed(line(type="result", subtype="success", is_error=False, api_error_status=None,
                     result="ok", num_turns=1, total_cost_usd=0.01, permission_denials=[]))
    assert events == [] and parser.finish(exit_code=0).status == COMPLETED


def test_the_5_hour_limit_text_is_a_usage_limit_even_without_the_event() -> None:
    text = "You've hit your 5-hour limit · resets 6:21am (UTC)"
    parser = ClaudeStreamParser()
    parser.feed(synthetic(text, "rate_limit"))
    parser.feed(api_result(text, 429))
    result = parser.finish(exit_code=1)
    assert result.failure_reason == FailureReason.USAGE_LIMIT
