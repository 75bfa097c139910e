"""OpenAI Responses API (as codex 0.171 calls it): request view, SSE events, JSON, errors.

``POST /v1/responses`` with ``"stream": true`` answers SSE: ``response.created``,
``response.in_progress``, then per output item ``response.output_item.added``, its deltas
(``response.output_text.delta`` inside ``response.content_part.added/done`` for a message,
``response.function_call_arguments.delta/done`` for a ``function_call``,
``response.custom_tool_call_input.delta/done`` for a ``custom_tool_call`` such as codex's
``apply_patch``, ``response.reasoning_summary_text.delta`` for reasoning),
``response.output_item.done``, and last ``response.completed`` with ``usage``
(``response.incomplete`` for ``max_tokens``; a refusal is a ``refusal`` content part).

A :class:`ToolUse` with a ``dict`` input becomes a ``function_call`` (``arguments`` is its
JSON); with a ``str`` input (``tool_use("apply_patch", "*** Begin Patch...")`` via
:func:`custom_tool`) a ``custom_tool_call``. Tool results come back as
``function_call_output`` / ``custom_tool_call_output`` input items.
"""

from __future__ import annotations

import json
import time
from typing import Any

from tests.support.script import ModelRequest, Reply, Text, Thinking, ToolUse, new_id

NAME = "openai-responses"
ERROR_TYPES = {
    400: ("invalid_request_error", "invalid_request"), 401: ("invalid_request_error",
                                                             "invalid_api_key"),
    403: ("invalid_request_error", "forbidden"), 404: ("invalid_request_error", "not_found"),
    429: ("rate_limit_error", "rate_limit_exceeded"), 500: ("server_error", "server_error"),
    503: ("server_error", "server_is_overloaded"), 529: ("server_error", "server_is_overloaded"),
}
ERROR_MESSAGES = {
    401: "Incorrect API key provided: sk-***.", 429: "Rate limit reached. Please try again later.",
    500: "The server had an error while processing your request.",
    503: "The server is overloaded.", 529: "The server is overloaded.",
}
OUTPUT_KINDS = ("function_call_output", "custom_tool_call_output", "local_shell_call_output",
                "tool_search_output", "mcp_tool_call_output")
CALL_KINDS = ("function_call", "custom_tool_call", "local_shell_call")


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts = []
    for part in content if isinstance(content, list) else []:
        if isinstance(part, dict) and isinstance(part.get("text"), str):
            parts.append(part["text"])
    return "\n".join(parts)


def parse(path: str, body: dict[str, Any]) -> ModelRequest:
    """The neutral view of a Responses API body (``instructions`` + ``input`` items).

    System text: ``instructions`` and ``developer``/``system`` messages. A tool turn is a run
    of consecutive ``*_call_output`` items.
    """
    items = body.get("input")
    if isinstance(items, str):
        items = [{"type": "message", "role": "user", "content": items}]
    items = items if isinstance(items, list) else []
    system_parts = [str(body["instructions"])] if body.get("instructions") else []
    user_texts: list[str] = []
    names: dict[str, str] = {}
    results: list[tuple[str, str, bool]] = []
    tool_turns = 0
    previous_was_output = False
    assistant_turns = 0
    previous_was_assistant = False
    last_text = ""
    for item in items:
        if not isinstance(item, dict):
            continue
        kind = item.get("type", "message")
        from_assistant = kind in (*CALL_KINDS, "reasoning") or (
            kind == "message" and item.get("role") == "assistant")
        assistant_turns += from_assistant and not previous_was_assistant
        previous_was_assistant = from_assistant
        if kind in CALL_KINDS:
            names[str(item.get("call_id"))] = str(item.get("name", kind))
            previous_was_output = False
        elif kind in OUTPUT_KINDS:
            if not previous_was_output:
                tool_turns += 1
            previous_was_output = True
            output = item.get("output")
            text = output if isinstance(output, str) else json.dumps(output)
            call = str(item.get("call_id"))
            results.append((names.get(call, call), text, False))
        elif kind == "message":
            role = item.get("role")
            text = _text_of(item.get("content"))
            if role in ("developer", "system"):
                system_parts.append(text)
            elif role == "user":
                user_texts.append(text)
                last_text = text
                previous_was_output = False
            else:
                previous_was_output = False
    tools = []
    for tool in body.get("tools") or []:
        if isinstance(tool, dict):
            tools.append(str(tool.get("name") or tool.get("type")))
    system = "\n".join(system_parts)
    last_is_result = bool(items) and isinstance(items[-1], dict) \
        and items[-1].get("type") in OUTPUT_KINDS
    return ModelRequest(
        dialect=NAME, path=path, model=str(body.get("model", "")),
        stream=bool(body.get("stream")), system=system,
        prompt_text="\n".join([system, *user_texts]), last_text=last_text,
        tool_turns=tool_turns, last_is_tool_result=last_is_result, tools=tools,
        tool_results=results, body=body, assistant_turns=assistant_turns,
    )


def estimate_tokens(value: Any) -> int:
    size = len(value if isinstance(value, str) else json.dumps(value, default=str))
    return max(1, size // 4)


def usage(reply: Reply, request: ModelRequest) -> dict[str, Any]:
    out = reply.usage.output_tokens
    if out is None:
        out = estimate_tokens([_item(b, "x") for b in reply.blocks])
    inp = reply.usage.input_tokens
    if inp is None:
        inp = estimate_tokens(request.body.get("input", []))
    cached = reply.usage.cache_read_input_tokens
    return {"input_tokens": inp, "input_tokens_details": {"cached_tokens": cached},
            "output_tokens": out, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": inp + out}


def _item(block: Any, item_id: str) -> dict[str, Any]:
    """The finished output item of a block."""
    if isinstance(block, Text):
        return {"id": item_id, "type": "message", "status": "completed", "role": "assistant",
                "content": [{"type": "output_text", "text": block.text, "annotations": []}]}
    if isinstance(block, Thinking):
        return {"id": item_id, "type": "reasoning", "encrypted_content": block.signature,
                "summary": [{"type": "summary_text", "text": block.thinking}]}
    assert isinstance(block, ToolUse)
    call_id = block.id or f"call_{item_id}"
    if isinstance(block.input, str):
        return {"id": item_id, "type": "custom_tool_call", "status": "completed",
                "call_id": call_id, "name": block.name, "input": block.input}
    return {"id": item_id, "type": "function_call", "status": "completed", "call_id": call_id,
            "name": block.name, "arguments": json.dumps(block.input)}


def _response(request: ModelRequest, reply: Reply, rid: str, status: str,
              output: list[dict[str, Any]], with_usage: bool) -> dict[str, Any]:
    response: dict[str, Any] = {
        "id": rid, "object": "response", "created_at": int(time.time()), "status": status,
        "model": reply.model or request.model, "output": output, "error": None,
        "incomplete_details": None, "parallel_tool_calls": True, "tool_choice": "auto",
        "tools": [], "usage": usage(reply, request) if with_usage else None,
    }
    if status == "incomplete":
        response["incomplete_details"] = {"reason": "max_output_tokens"}
    return response


def _items(reply: Reply) -> list[tuple[Any, dict[str, Any]]]:
    blocks = list(reply.blocks)
    if reply.stop_reason == "refusal":
        return [(None, {"id": new_id("msg"), "type": "message", "status": "completed",
                        "role": "assistant", "content": [
                            {"type": "refusal", "refusal": reply.text() or "I can't help."}]})]
    return [(b, _item(b, new_id("fc" if isinstance(b, ToolUse) else "msg"))) for b in blocks]


def message_json(reply: Reply, request: ModelRequest) -> dict[str, Any]:
    status = "incomplete" if reply.stop_reason == "max_tokens" else "completed"
    return _response(request, reply, new_id("resp"), status, [i for _, i in _items(reply)], True)


def _chunks(text: str, size: int) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)] or [""]


def sse_events(reply: Reply, request: ModelRequest) -> list[tuple[str | None, Any]]:
    rid = new_id("resp")
    seq = iter(range(1_000_000))
    events: list[tuple[str | None, Any]] = []

    def add(kind: str, **data: Any) -> None:
        events.append((kind, {"type": kind, "sequence_number": next(seq), **data}))

    add("response.created", response=_response(request, reply, rid, "in_progress", [], False))
    add("response.in_progress", response=_response(request, reply, rid, "in_progress", [], False))
    done: list[dict[str, Any]] = []
    for index, (_block, item) in enumerate(_items(reply)):
        iid = item["id"]
        if item["type"] == "message":
            add("response.output_item.added", output_index=index,
                item={**item, "status": "in_progress", "content": []})
            part = item["content"][0]
            if part["type"] == "refusal":
                add("response.content_part.added", item_id=iid, output_index=index,
                    content_index=0, part={"type": "refusal", "refusal": ""})
                add("response.refusal.delta", item_id=iid, output_index=index, content_index=0,
                    delta=part["refusal"])
                add("response.refusal.done", item_id=iid, output_index=index, content_index=0,
                    refusal=part["refusal"])
            else:
                add("response.content_part.added", item_id=iid, output_index=index,
                    content_index=0, part={"type": "output_text", "text": "", "annotations": []})
                for piece in _chunks(part["text"], 40):
                    add("response.output_text.delta", item_id=iid, output_index=index,
                        content_index=0, delta=piece, logprobs=[])
                add("response.output_text.done", item_id=iid, output_index=index,
                    content_index=0, text=part["text"], logprobs=[])
            add("response.content_part.done", item_id=iid, output_index=index, content_index=0,
                part=part)
        elif item["type"] == "reasoning":
            add("response.output_item.added", output_index=index,
                item={**item, "summary": []})
            text = item["summary"][0]["text"]
            add("response.reasoning_summary_part.added", item_id=iid, output_index=index,
                summary_index=0, part={"type": "summary_text", "text": ""})
            for piece in _chunks(text, 40):
                add("response.reasoning_summary_text.delta", item_id=iid, output_index=index,
                    summary_index=0, delta=piece)
            add("response.reasoning_summary_text.done", item_id=iid, output_index=index,
                summary_index=0, text=text)
            add("response.reasoning_summary_part.done", item_id=iid, output_index=index,
                summary_index=0, part={"type": "summary_text", "text": text})
        elif item["type"] == "function_call":
            add("response.output_item.added", output_index=index,
                item={**item, "status": "in_progress", "arguments": ""})
            for piece in _chunks(item["arguments"], 12):
                add("response.function_call_arguments.delta", item_id=iid, output_index=index,
                    delta=piece)
            add("response.function_call_arguments.done", item_id=iid, output_index=index,
                arguments=item["arguments"])
        else:  # custom_tool_call
            add("response.output_item.added", output_index=index,
                item={**item, "status": "in_progress", "input": ""})
            for piece in _chunks(item["input"], 40):
                add("response.custom_tool_call_input.delta", item_id=iid, output_index=index,
                    delta=piece)
            add("response.custom_tool_call_input.done", item_id=iid, output_index=index,
                input=item["input"])
        add("response.output_item.done", output_index=index, item=item)
        done.append(item)
    if reply.stop_reason == "max_tokens":
        add("response.incomplete",
            response=_response(request, reply, rid, "incomplete", done, True))
    else:
        add("response.completed", response=_response(request, reply, rid, "completed", done, True))
    return events


def error_body(status: int, error_type: str | None = None, message: str | None = None) -> dict:
    kind, code = ERROR_TYPES.get(status, ("server_error", "server_error"))
    return {"error": {"message": message or ERROR_MESSAGES.get(status, f"error {status}"),
                      "type": error_type or kind, "param": None, "code": code}}


def stream_error_event(status: int) -> tuple[str, dict[str, Any]]:
    """A ``response.failed`` event (the stream then ends)."""
    body = error_body(status)["error"]
    return "response.failed", {"type": "response.failed", "response": {
        "id": new_id("resp"), "object": "response", "status": "failed",
        "error": {"code": body["code"], "message": body["message"]}, "output": [],
        "usage": None}}
