"""OpenAI chat completions (as aider 0.86 calls it through litellm).

``POST /v1/chat/completions``: with ``"stream": true`` SSE ``data:`` chunks
(``chat.completion.chunk``: the role, ``content`` pieces, ``tool_calls`` with the arguments in
pieces, a last chunk with ``finish_reason`` — ``stop``, ``tool_calls``, ``length`` for
``max_tokens``, ``content_filter`` for a refusal — then a usage chunk when
``stream_options.include_usage``), then ``data: [DONE]``; otherwise one ``chat.completion``.
Tool results come back as ``role: "tool"`` messages. Errors use OpenAI's ``{"error": {...}}``.
"""

from __future__ import annotations

import json
import time
from typing import Any

from tests.support.dialects.openai_responses import error_body as _error_body
from tests.support.script import ModelRequest, Reply, Text, Thinking, ToolUse, new_id

NAME = "openai-chat"
FINISH = {"max_tokens": "length", "refusal": "content_filter", "tool_use": "tool_calls",
          "end_turn": "stop"}


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "\n".join(str(p.get("text", "")) for p in content or []
                     if isinstance(p, dict) and p.get("type") == "text")


def parse(path: str, body: dict[str, Any]) -> ModelRequest:
    """The neutral view of a chat completions body (``system`` messages are the system text;
    a tool turn is a run of consecutive ``tool`` messages)."""
    system_parts: list[str] = []
    user_texts: list[str] = []
    names: dict[str, str] = {}
    results: list[tuple[str, str, bool]] = []
    tool_turns = assistant_turns = 0
    previous_tool = False
    last_text = ""
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    for message in messages:
        role = message.get("role")
        if role in ("system", "developer"):
            system_parts.append(_text_of(message.get("content")))
            previous_tool = False
        elif role == "assistant":
            assistant_turns += 1
            for call in message.get("tool_calls") or []:
                if isinstance(call, dict):
                    names[str(call.get("id"))] = str((call.get("function") or {}).get("name"))
            previous_tool = False
        elif role in ("tool", "function"):
            tool_turns += not previous_tool
            previous_tool = True
            call = str(message.get("tool_call_id") or message.get("name"))
            results.append((names.get(call, call), _text_of(message.get("content")), False))
        else:
            text = _text_of(message.get("content"))
            user_texts.append(text)
            last_text = text
            previous_tool = False
    tools = [str((t.get("function") or {}).get("name")) for t in body.get("tools") or []
             if isinstance(t, dict)]
    system = "\n".join(system_parts)
    return ModelRequest(
        dialect=NAME, path=path, model=str(body.get("model", "")),
        stream=bool(body.get("stream")), system=system,
        prompt_text="\n".join([system, *user_texts]), last_text=last_text,
        tool_turns=tool_turns,
        last_is_tool_result=bool(messages) and messages[-1].get("role") in ("tool", "function"),
        tools=tools, tool_results=results, body=body, assistant_turns=assistant_turns,
    )


def estimate_tokens(value: Any) -> int:
    size = len(value if isinstance(value, str) else json.dumps(value, default=str))
    return max(1, size // 4)


def usage(reply: Reply, request: ModelRequest) -> dict[str, Any]:
    out = reply.usage.output_tokens
    if out is None:
        out = estimate_tokens(reply.text() + json.dumps(
            [b.input for b in reply.blocks if isinstance(b, ToolUse)]))
    prompt = reply.usage.input_tokens
    if prompt is None:
        prompt = estimate_tokens(request.body.get("messages", []))
    return {"prompt_tokens": prompt, "completion_tokens": out, "total_tokens": prompt + out,
            "prompt_tokens_details": {"cached_tokens": reply.usage.cache_read_input_tokens}}


def _calls(reply: Reply) -> list[dict[str, Any]]:
    calls = []
    for block in reply.blocks:
        if isinstance(block, ToolUse):
            args = block.input if isinstance(block.input, str) else json.dumps(block.input)
            calls.append({"id": block.id or new_id("call"), "type": "function",
                          "function": {"name": block.name, "arguments": args}})
    return calls


def _finish(reply: Reply) -> str:
    return FINISH.get(reply.effective_stop_reason, "stop")


def message_json(reply: Reply, request: ModelRequest) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.text() or None}
    reasoning = "".join(b.thinking for b in reply.blocks if isinstance(b, Thinking))
    if reasoning:
        message["reasoning_content"] = reasoning
    calls = _calls(reply)
    if calls:
        message["tool_calls"] = calls
    if reply.stop_reason == "refusal":
        message = {"role": "assistant", "content": None,
                   "refusal": reply.text() or "I can't help with that."}
    return {"id": new_id("chatcmpl"), "object": "chat.completion", "created": int(time.time()),
            "model": reply.model or request.model,
            "choices": [{"index": 0, "message": message, "finish_reason": _finish(reply),
                         "logprobs": None}],
            "usage": usage(reply, request)}


def sse_events(reply: Reply, request: ModelRequest) -> list[tuple[str | None, Any]]:
    cid, created = new_id("chatcmpl"), int(time.time())
    model = reply.model or request.model

    def chunk(delta: dict[str, Any], finish: str | None = None) -> tuple[None, dict[str, Any]]:
        return None, {"id": cid, "object": "chat.completion.chunk", "created": created,
                      "model": model, "choices": [{"index": 0, "delta": delta,
                                                   "finish_reason": finish, "logprobs": None}]}

    events: list[tuple[str | None, Any]] = [chunk({"role": "assistant", "content": ""})]
    if reply.stop_reason == "refusal":
        events.append(chunk({"refusal": reply.text() or "I can't help with that."}))
    else:
        for block in reply.blocks:
            if isinstance(block, Thinking):
                for i in range(0, len(block.thinking), 40):
                    events.append(chunk({"reasoning_content": block.thinking[i:i + 40]}))
            elif isinstance(block, Text):
                for i in range(0, len(block.text), 40):
                    events.append(chunk({"content": block.text[i:i + 40]}))
        for index, call in enumerate(_calls(reply)):
            events.append(chunk({"tool_calls": [{"index": index, "id": call["id"],
                                                 "type": "function", "function": {
                                                     "name": call["function"]["name"],
                                                     "arguments": ""}}]}))
            args = call["function"]["arguments"]
            for i in range(0, len(args), 12):
                events.append(chunk({"tool_calls": [{"index": index, "function": {
                    "arguments": args[i:i + 12]}}]}))
    events.append(chunk({}, _finish(reply)))
    options = request.body.get("stream_options") or {}
    if isinstance(options, dict) and options.get("include_usage"):
        events.append((None, {"id": cid, "object": "chat.completion.chunk", "created": created,
                              "model": model, "choices": [], "usage": usage(reply, request)}))
    events.append((None, "[DONE]"))
    return events


def error_body(status: int, error_type: str | None = None, message: str | None = None) -> dict:
    return _error_body(status, error_type, message)


def stream_error_event(status: int) -> tuple[None, dict[str, Any]]:
    """An ``{"error": ...}`` object as an SSE chunk (what OpenAI-compatible servers send)."""
    return None, error_body(status)
