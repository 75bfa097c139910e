"""Gemini API (as gemini-cli 0.61 calls it): request view, SSE chunks, JSON, errors.

``POST /v1beta/models/{model}:streamGenerateContent?alt=sse`` answers SSE ``data:`` chunks of
``GenerateContentResponse`` (``candidates[0].content.parts``: ``text`` pieces, ``thought``
parts for thinking, whole ``functionCall`` parts), the last one with ``finishReason``
(``STOP``; ``MAX_TOKENS``; ``SAFETY`` for a refusal) and ``usageMetadata``.
``:generateContent`` gives one JSON response, ``:countTokens`` ``{"totalTokens": n}``.
Tool results come back as ``functionResponse`` parts in a ``user`` content.
Errors use ``{"error": {"code", "message", "status"}}``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from tests.support.script import ModelRequest, Reply, Text, Thinking, ToolUse, new_id

NAME = "gemini"
PATH = re.compile(r"^/v1(?:beta|alpha)?/models/([^/:]+):(streamGenerateContent|generateContent"
                  r"|countTokens)$")
STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
          404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE",
          529: "UNAVAILABLE"}
MESSAGES = {401: "API key not valid. Please pass a valid API key.",
            429: "Resource has been exhausted (e.g. check quota).",
            500: "An internal error has occurred.",
            503: "The model is overloaded. Please try again later.",
            529: "The model is overloaded. Please try again later."}


def route(path: str) -> tuple[str, str] | None:
    """(model, method) of a Gemini path, or None."""
    found = PATH.match(path.rstrip("/"))
    return (found.group(1), found.group(2)) if found else None


def _texts(parts: Any) -> str:
    return "\n".join(str(p["text"]) for p in parts if isinstance(p, dict)
                     and isinstance(p.get("text"), str) and not p.get("thought")) \
        if isinstance(parts, list) else ""


def parse(path: str, body: dict[str, Any]) -> ModelRequest:
    """The neutral view of a ``generateContent`` body; the model is taken from the path."""
    found = route(path)
    model, method = found if found else ("", "generateContent")
    system_instruction = body.get("systemInstruction") or body.get("system_instruction") or {}
    system = _texts(system_instruction.get("parts")) if isinstance(system_instruction, dict) \
        else str(system_instruction)
    user_texts: list[str] = []
    results: list[tuple[str, str, bool]] = []
    tool_turns = 0
    last_is_result = False
    last_text = ""
    for content in body.get("contents") or []:
        if not isinstance(content, dict) or content.get("role", "user") != "user":
            continue
        parts = content.get("parts") if isinstance(content.get("parts"), list) else []
        responses = [p["functionResponse"] for p in parts
                     if isinstance(p, dict) and isinstance(p.get("functionResponse"), dict)]
        for response in responses:
            out = response.get("response")
            text = json.dumps(out) if not isinstance(out, str) else out
            is_error = isinstance(out, dict) and "error" in out
            results.append((str(response.get("name")), text, is_error))
        tool_turns += bool(responses)
        last_is_result = bool(responses)
        text = _texts(parts)
        if text:
            user_texts.append(text)
            last_text = text
    tools = [str(decl.get("name")) for tool in body.get("tools") or [] if isinstance(tool, dict)
             for decl in tool.get("functionDeclarations") or [] if isinstance(decl, dict)]
    return ModelRequest(
        dialect=NAME, path=path, model=model, stream=method == "streamGenerateContent",
        system=system, prompt_text="\n".join([system, *user_texts]), last_text=last_text,
        tool_turns=tool_turns, last_is_tool_result=last_is_result, tools=tools,
        tool_results=results, body=body,
        assistant_turns=sum(1 for c in body.get("contents") or [] if isinstance(c, dict)
                            and c.get("role") == "model"),
    )


def estimate_tokens(value: Any) -> int:
    size = len(value if isinstance(value, str) else json.dumps(value, default=str))
    return max(1, size // 4)


def usage(reply: Reply, request: ModelRequest) -> dict[str, int]:
    out = reply.usage.output_tokens
    if out is None:
        out = estimate_tokens([_part(b) for b in reply.blocks])
    prompt = reply.usage.input_tokens
    if prompt is None:
        prompt = estimate_tokens(request.body.get("contents", []))
    meta = {"promptTokenCount": prompt, "candidatesTokenCount": out,
            "totalTokenCount": prompt + out}
    if reply.usage.cache_read_input_tokens:
        meta["cachedContentTokenCount"] = reply.usage.cache_read_input_tokens
    return meta


def _part(block: Any) -> dict[str, Any]:
    if isinstance(block, Text):
        return {"text": block.text}
    if isinstance(block, Thinking):
        return {"text": block.thinking, "thought": True}
    assert isinstance(block, ToolUse)
    args = block.input if isinstance(block.input, dict) else {"input": block.input}
    part: dict[str, Any] = {"functionCall": {"name": block.name, "args": args}}
    if block.id:
        part["functionCall"]["id"] = block.id
    return part


FINISH = {"max_tokens": "MAX_TOKENS", "refusal": "SAFETY"}


def _chunk(parts: list[dict[str, Any]], request: ModelRequest, reply: Reply,
           finish: str | None, meta: dict[str, int] | None, rid: str) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    chunk: dict[str, Any] = {"candidates": [candidate],
                             "modelVersion": reply.model or request.model, "responseId": rid}
    if meta:
        chunk["usageMetadata"] = meta
    return chunk


def message_json(reply: Reply, request: ModelRequest) -> dict[str, Any]:
    finish = FINISH.get(reply.stop_reason or "", "STOP")
    parts = [] if finish == "SAFETY" else [_part(b) for b in reply.blocks]
    return _chunk(parts, request, reply, finish, usage(reply, request), new_id("resp"))


def sse_events(reply: Reply, request: ModelRequest) -> list[tuple[str | None, Any]]:
    rid = new_id("resp")
    finish = FINISH.get(reply.stop_reason or "", "STOP")
    meta = usage(reply, request)
    pieces: list[dict[str, Any]] = []
    if finish != "SAFETY":
        for block in reply.blocks:
            if isinstance(block, Text | Thinking):
                body = block.text if isinstance(block, Text) else block.thinking
                for i in range(0, max(len(body), 1), 40):
                    part = _part(block)
                    part["text"] = body[i:i + 40]
                    pieces.append(part)
            else:
                pieces.append(_part(block))
    if not pieces:
        pieces = [{"text": ""}]
    events: list[tuple[str | None, Any]] = []
    for index, part in enumerate(pieces):
        last = index == len(pieces) - 1
        events.append((None, _chunk([part], request, reply, finish if last else None,
                                    meta if last else None, rid)))
    return events


def error_body(status: int, error_type: str | None = None, message: str | None = None) -> dict:
    return {"error": {"code": status, "message": message or MESSAGES.get(status, f"error {status}"),
                      "status": error_type or STATUS.get(status, "UNKNOWN")}}


def stream_error_event(status: int) -> tuple[None, dict[str, Any]]:
    """An error object sent as an SSE chunk (what Google's servers do mid-stream)."""
    return None, error_body(status)


def count_tokens(body: dict[str, Any]) -> dict[str, int]:
    return {"totalTokens": estimate_tokens(body.get("contents", []))}
