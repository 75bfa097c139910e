"""OpenAI chat completions (as aider 0.86.2 calls it through litellm): request view, answers.

``POST /v1/chat/completions``. aider sends ``{"model", "messages", "temperature": 0}`` and,
with ``--no-stream`` (mc's template), wants one ``chat.completion`` JSON; with
``"stream": true`` it gets ``chat.completion.chunk`` SSE lines and ``data: [DONE]``. aider
edits files from the reply's text (SEARCH/REPLACE blocks), it offers no tools; a
:class:`ToolUse` still becomes a ``tool_calls`` entry for clients that do.

Measured message layout of aider: ``system`` (its instructions), a ``user``/``assistant``
("Ok.") pair per file context, the ``user`` task, then a ``system`` reminder last. So
``last_text`` is the last *user* message, and ``tool_turns`` counts earlier replies: role
``tool`` groups for tool-calling clients, else assistant messages other than aider's "Ok."
acknowledgements (a test-failure reflection is the second turn). Errors use OpenAI's
``{"error": {"message", "type", "code"}}``.
"""

from __future__ import annotations

import json
import time
from typing import Any

from tests.support.script import ModelRequest, Reply, Text, ToolUse, new_id

NAME = "openai-chat"
ERROR_TYPES = {
    400: ("invalid_request_error", None), 401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "forbidden"), 404: ("invalid_request_error", "model_not_found"),
    429: ("rate_limit_exceeded", "rate_limit_exceeded"), 500: ("server_error", None),
    503: ("server_error", None), 529: ("server_error", "overloaded"),
}
ERROR_MESSAGES = {
    401: "Incorrect API key provided.", 429: "Rate limit reached for requests",
    500: "The server had an error while processing your request.", 529: "Overloaded",
}
ACKS = frozenset({"Ok.", "Ok"})


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts = [str(p.get("text", "")) for p in content or []
             if isinstance(p, dict) and p.get("type") in ("text", "input_text")]
    return "\n".join(parts)


def parse(path: str, body: dict[str, Any]) -> ModelRequest:
    """The neutral view of a chat completions body (see the module docstring)."""
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    system = "\n".join(_text_of(m.get("content")) for m in messages if m.get("role") == "system")
    user_texts = [_text_of(m.get("content")) for m in messages if m.get("role") == "user"]
    names: dict[str, str] = {}
    results: list[tuple[str, str, bool]] = []
    tool_groups = 0
    replies = 0
    previous = None
    for message in messages:
        role = message.get("role")
        if role == "assistant":
            for call in message.get("tool_calls") or []:
                if isinstance(call, dict):
                    names[str(call.get("id"))] = str((call.get("function") or {}).get("name"))
            if _text_of(message.get("content")).strip() not in ACKS or message.get("tool_calls"):
                replies += 1
        if role == "tool":
            cid = str(message.get("tool_call_id"))
            results.append((names.get(cid, cid), _text_of(message.get("content")), False))
            tool_groups += previous != "tool"
        previous = role
    last_role = next((m.get("role") for m in reversed(messages) if m.get("role") != "system"), None)
    tools = [str((t.get("function") or {}).get("name") or t.get("name"))
             for t in body.get("tools") or [] if isinstance(t, dict)]
    return ModelRequest(
        dialect=NAME, path=path, model=str(body.get("model", "")), stream=bool(body.get("stream")),
        system=system, prompt_text="\n".join([system, *user_texts]),
        last_text=user_texts[-1] if user_texts else "",
        tool_turns=tool_groups if results else replies, last_is_tool_result=last_role == "tool",
        tools=tools, tool_results=results, body=body,
    )


def estimate_tokens(value: Any) -> int:
    """About four characters a token (at least 1)."""
    size = len(value if isinstance(value, str) else json.dumps(value, default=str))
    return max(1, size // 4)


def _usage(reply: Reply, request: ModelRequest) -> dict[str, Any]:
    prompt = reply.usage.input_tokens
    if prompt is None:
        prompt = estimate_tokens(request.body.get("messages", []))
    out = reply.usage.output_tokens
    if out is None:
        out = estimate_tokens(reply.text() or [b.input for b in reply.blocks
                                               if isinstance(b, ToolUse)])
    cached = reply.usage.cache_read_input_tokens
    return {"prompt_tokens": prompt + cached, "completion_tokens": out,
            "total_tokens": prompt + cached + out,
            "prompt_tokens_details": {"cached_tokens": cached}}


def _finish_reason(reply: Reply) -> str:
    reason = reply.effective_stop_reason
    return {"tool_use": "tool_calls", "max_tokens": "length", "refusal": "content_filter",
            "end_turn": "stop"}.get(reason, reason)


def _tool_calls(reply: Reply) -> list[dict[str, Any]]:
    return [{"id": b.id or new_id("call"), "type": "function",
             "function": {"name": b.name, "arguments": json.dumps(b.input)}}
            for b in reply.blocks if isinstance(b, ToolUse)]


def message_json(reply: Reply, request: ModelRequest) -> dict[str, Any]:
    """The non-streaming ``chat.completion`` object."""
    message: dict[str, Any] = {"role": "assistant",
                               "content": "".join(b.text for b in reply.blocks
                                                  if isinstance(b, Text)) or None}
    calls = _tool_calls(reply)
    if calls:
        message["tool_calls"] = calls
    if reply.stop_reason == "refusal":
        message["refusal"], message["content"] = reply.text() or "I can't help with that.", None
    return {
        "id": new_id("chatcmpl"), "object": "chat.completion", "created": int(time.time()),
        "model": reply.model or request.model,
        "choices": [{"index": 0, "message": message, "finish_reason": _finish_reason(reply)}],
        "usage": _usage(reply, request),
    }


def sse_events(reply: Reply, request: ModelRequest) -> list[tuple[str | None, Any]]:
    """``chat.completion.chunk`` data lines, the usage chunk, then ``[DONE]``."""
    cid, created, model = new_id("chatcmpl"), int(time.time()), reply.model or request.model

    def chunk(delta: dict[str, Any], finish: str | None = None) -> tuple[None, dict[str, Any]]:
        return None, {"id": cid, "object": "chat.completion.chunk", "created": created,
                      "model": model, "choices": [{"index": 0, "delta": delta,
                                                   "finish_reason": finish}]}

    events: list[tuple[str | None, Any]] = [chunk({"role": "assistant", "content": ""})]
    text = reply.text()
    for i in range(0, len(text), 40):
        events.append(chunk({"content": text[i:i + 40]}))
    for index, call in enumerate(_tool_calls(reply)):
        events.append(chunk({"tool_calls": [{"index": index, **call}]}))
    events.append(chunk({}, _finish_reason(reply)))
    events.append((None, {"id": cid, "object": "chat.completion.chunk", "created": created,
                          "model": model, "choices": [], "usage": _usage(reply, request)}))
    events.append((None, "[DONE]"))
    return events


def error_body(status: int, error_type: str | None = None, message: str | None = None) -> dict:
    """OpenAI's error JSON for an HTTP status."""
    kind, code = ERROR_TYPES.get(status, ("server_error", None))
    return {"error": {"message": message or ERROR_MESSAGES.get(status, f"error {status}"),
                      "type": error_type or kind, "param": None, "code": code}}


def stream_error_event(status: int) -> tuple[str | None, dict[str, Any]]:
    """An error sent mid-stream (a data line holding an ``error`` object)."""
    return None, error_body(status)


def count_tokens(body: dict[str, Any]) -> dict[str, int]:
    """Not part of this API; kept for the dialect interface."""
    return {"input_tokens": estimate_tokens(body.get("messages"))}
