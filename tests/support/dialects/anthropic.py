"""Anthropic Messages API (as Claude Code calls it): request view, SSE events, JSON, errors.

``POST /v1/messages`` (Claude Code adds ``?beta=true``) answers SSE when the body has
``"stream": true``: message_start, ping, per block content_block_start / *_delta /
content_block_stop (text_delta; input_json_delta in several chunks for tool_use;
thinking_delta + signature_delta for thinking), message_delta (stop_reason, usage),
message_stop. Otherwise one ``message`` JSON. ``POST /v1/messages/count_tokens`` gives
``{"input_tokens": n}``. Errors use ``{"type": "error", "error": {"type", "message"}}``.
"""

from __future__ import annotations

import json
from typing import Any

from tests.support.script import ModelRequest, Reply, Text, Thinking, ToolUse, new_id

NAME = "anthropic"
ERROR_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
    404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
    500: "api_error", 529: "overloaded_error",
}
ERROR_MESSAGES = {
    401: "invalid x-api-key", 429: "Number of request tokens has exceeded your rate limit.",
    500: "Internal server error", 529: "Overloaded",
}
JSON_CHUNK = 12  # characters of tool input JSON per input_json_delta


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for block in content if isinstance(content, list) else []:
        if isinstance(block, dict) and block.get("type") == "text":
            parts.append(str(block.get("text", "")))
    return "\n".join(parts)


def _result_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return _text_of(content)


def parse(path: str, body: dict[str, Any]) -> ModelRequest:
    """The neutral view of a Messages API body.

    Claude Code 2.1.33x sends ``system`` as text blocks and also a ``role: "system"``
    message (its environment section) after the first user message; both count as prompt
    text, neither as the last user message.
    """
    system = _text_of(body.get("system"))
    messages = body.get("messages") if isinstance(body.get("messages"), list) else []
    user_texts: list[str] = []
    tool_turns = 0
    results: list[tuple[str, str, bool]] = []
    names: dict[str, str] = {}
    last_is_result = False
    last_text = ""
    for message in messages:
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        blocks = content if isinstance(content, list) else []
        if message.get("role") == "assistant":
            for block in blocks:
                if isinstance(block, dict) and block.get("type") == "tool_use":
                    names[str(block.get("id"))] = str(block.get("name"))
            continue
        if message.get("role") == "system":  # Claude Code 2.1.33x: the environment block
            user_texts.append(_text_of(content))
            continue
        has_result = False
        for block in blocks:
            if isinstance(block, dict) and block.get("type") == "tool_result":
                has_result = True
                tid = str(block.get("tool_use_id"))
                results.append((names.get(tid, tid), _result_text(block.get("content")),
                                bool(block.get("is_error"))))
        tool_turns += has_result
        last_is_result = has_result
        last_text = _text_of(content)
        if last_text:
            user_texts.append(last_text)
    tools = [str(t.get("name")) for t in body.get("tools") or [] if isinstance(t, dict)]
    return ModelRequest(
        dialect=NAME, path=path, model=str(body.get("model", "")), stream=bool(body.get("stream")),
        system=system, prompt_text="\n".join([system, *user_texts]), last_text=last_text,
        tool_turns=tool_turns, last_is_tool_result=last_is_result, tools=tools,
        tool_results=results, body=body,
        assistant_turns=sum(1 for m in messages if isinstance(m, dict)
                            and m.get("role") == "assistant"),
    )


def estimate_tokens(value: Any) -> int:
    """About four characters a token (at least 1)."""
    size = len(value if isinstance(value, str) else json.dumps(value, default=str))
    return max(1, size // 4)


def usage(reply: Reply, request: ModelRequest) -> tuple[dict[str, int], int]:
    """(the usage of message_start, output tokens)."""
    out = reply.usage.output_tokens
    if out is None:
        out = estimate_tokens([_block_payload(b) for b in reply.blocks])
    start = {
        "input_tokens": reply.usage.input_tokens if reply.usage.input_tokens is not None
        else estimate_tokens(request.body.get("messages", [])),
        "cache_creation_input_tokens": reply.usage.cache_creation_input_tokens,
        "cache_read_input_tokens": reply.usage.cache_read_input_tokens,
        "output_tokens": 1,
    }
    return start, out


def _block_payload(block: Any) -> dict[str, Any]:
    if isinstance(block, Text):
        return {"type": "text", "text": block.text}
    if isinstance(block, Thinking):
        return {"type": "thinking", "thinking": block.thinking, "signature": block.signature}
    assert isinstance(block, ToolUse)
    if block.id is None:
        block.id = new_id("toolu")
    return {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}


def _fresh(reply: Reply) -> list[Any]:
    """The reply's blocks with tool ids made unique per answer (scripts reuse Reply objects)."""
    fresh = []
    for block in reply.blocks:
        if isinstance(block, ToolUse):
            block = ToolUse(block.name, block.input, block.id or new_id("toolu"))
        fresh.append(block)
    return fresh


def message_json(reply: Reply, request: ModelRequest) -> dict[str, Any]:
    """The non-streaming ``message`` object."""
    start, out = usage(reply, request)
    return {
        "id": new_id("msg"), "type": "message", "role": "assistant",
        "model": reply.model or request.model,
        "content": [_block_payload(b) for b in _fresh(reply)],
        "stop_reason": reply.effective_stop_reason, "stop_sequence": None,
        "usage": {**start, "output_tokens": out},
    }


def _chunks(text: str, size: int) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)] or [""]


def sse_events(reply: Reply, request: ModelRequest) -> list[tuple[str | None, Any]]:
    """(event name, data) pairs of the streamed answer, in order."""
    start, out = usage(reply, request)
    message = {
        "id": new_id("msg"), "type": "message", "role": "assistant",
        "model": reply.model or request.model, "content": [], "stop_reason": None,
        "stop_sequence": None, "usage": start,
    }
    events: list[tuple[str | None, Any]] = [
        ("message_start", {"type": "message_start", "message": message}),
        ("ping", {"type": "ping"}),
    ]
    for index, block in enumerate(_fresh(reply)):
        if isinstance(block, Text):
            events.append(("content_block_start", {"type": "content_block_start", "index": index,
                           "content_block": {"type": "text", "text": ""}}))
            for piece in _chunks(block.text, 40):
                events.append(("content_block_delta", {"type": "content_block_delta", "index": index,
                               "delta": {"type": "text_delta", "text": piece}}))
        elif isinstance(block, Thinking):
            events.append(("content_block_start", {"type": "content_block_start", "index": index,
                           "content_block": {"type": "thinking", "thinking": "", "signature": ""}}))
            for piece in _chunks(block.thinking, 40):
                events.append(("content_block_delta", {"type": "content_block_delta", "index": index,
                               "delta": {"type": "thinking_delta", "thinking": piece}}))
            events.append(("content_block_delta", {"type": "content_block_delta", "index": index,
                           "delta": {"type": "signature_delta", "signature": block.signature}}))
        else:
            events.append(("content_block_start", {"type": "content_block_start", "index": index,
                           "content_block": {"type": "tool_use", "id": block.id,
                                             "name": block.name, "input": {}}}))
            for piece in _chunks(json.dumps(block.input), JSON_CHUNK):
                events.append(("content_block_delta", {"type": "content_block_delta", "index": index,
                               "delta": {"type": "input_json_delta", "partial_json": piece}}))
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    events.append(("message_delta", {
        "type": "message_delta",
        "delta": {"stop_reason": reply.effective_stop_reason, "stop_sequence": None},
        "usage": {"output_tokens": out},
    }))
    events.append(("message_stop", {"type": "message_stop"}))
    return events


def error_body(status: int, error_type: str | None = None, message: str | None = None) -> dict:
    """Anthropic's error JSON for an HTTP status."""
    return {"type": "error", "error": {
        "type": error_type or ERROR_TYPES.get(status, "api_error"),
        "message": message or ERROR_MESSAGES.get(status, f"error {status}"),
    }, "request_id": new_id("req")}


def stream_error_event(status: int) -> tuple[str, dict[str, Any]]:
    """The SSE ``error`` event sent mid-stream."""
    body = error_body(status)
    return "error", {"type": "error", "error": body["error"]}


def count_tokens(body: dict[str, Any]) -> dict[str, int]:
    """The ``count_tokens`` answer: an estimate over messages, system and tools."""
    return {"input_tokens": estimate_tokens([body.get("system"), body.get("messages"),
                                             body.get("tools")])}
