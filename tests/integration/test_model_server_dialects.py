"""The scripted model server's OpenAI Responses, Gemini and chat completions dialects."""

from __future__ import annotations

import json

from tests.support.http_client import request
from tests.support.model_server import (
    ModelServer,
    Rule,
    custom_tool,
    overloaded,
    rate_limited,
    stream_error,
    text,
    thinking,
    tool_use,
    turns,
)

SCRIPT = turns([tool_use("write", {"path": "a.py", "content": "x = 1\n" * 4}),
                thinking("ok", text("all done, " * 6))])


def responses_body(outputs: int = 0) -> dict:
    items: list[dict] = [{"type": "message", "role": "developer",
                          "content": [{"type": "input_text", "text": "You are codex."}]},
                         {"type": "message", "role": "user",
                          "content": [{"type": "input_text", "text": "go"}]}]
    for i in range(outputs):
        items += [{"type": "function_call", "call_id": f"c{i}", "name": "write", "arguments": "{}"},
                  {"type": "function_call_output", "call_id": f"c{i}", "output": "ok"}]
    return {"model": "gpt-5.5", "stream": True, "input": items,
            "tools": [{"type": "function", "name": "write"}]}


def test_responses_stream_function_call_then_text() -> None:
    with ModelServer([Rule(match="go", reply=SCRIPT)]) as server:
        first = request(server.url, "/v1/responses", responses_body()).events()
        second = request(server.url, "/v1/responses", responses_body(1)).events()
    names = [n for n, _ in first]
    assert names[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert names[-1] == "response.completed"
    args = "".join(d["delta"] for n, d in first if n == "response.function_call_arguments.delta")
    assert json.loads(args) == {"path": "a.py", "content": "x = 1\n" * 4}
    call = next(d["item"] for n, d in first if n == "response.output_item.done")
    assert call["type"] == "function_call" and call["name"] == "write" and call["call_id"]
    done = second[-1][1]["response"]
    assert [i["type"] for i in done["output"]] == ["reasoning", "message"]
    assert "".join(d["delta"] for n, d in second if n == "response.output_text.delta") == \
        "all done, " * 6
    assert done["usage"]["input_tokens"] > 0 and done["usage"]["output_tokens"] > 0
    assert [r.view.tool_turns for r in server.model_requests()] == [0, 1]
    assert [e["sequence_number"] for _, e in first] == list(range(len(first)))


def test_responses_custom_tool_max_tokens_and_errors() -> None:
    rules = [Rule(match="patch", reply=custom_tool("apply_patch", "*** Begin Patch\n")),
             Rule(match="long", reply=text("cut", stop_reason="max_tokens"))]
    with ModelServer(rules) as server:
        body = responses_body()
        body["input"][1]["content"][0]["text"] = "patch"
        patch = request(server.url, "/v1/responses", body).events()
        body["input"][1]["content"][0]["text"] = "long"
        long = request(server.url, "/v1/responses", body).events()
        server.fail_next(rate_limited(3))
        limited = request(server.url, "/v1/responses", body)
        server.fail_next(stream_error(after_events=2))
        failed = request(server.url, "/v1/responses", body).events()
    item = patch[-1][1]["response"]["output"][0]
    assert item == {"id": item["id"], "type": "custom_tool_call", "status": "completed",
                    "call_id": item["call_id"], "name": "apply_patch",
                    "input": "*** Begin Patch\n"}
    assert long[-1][0] == "response.incomplete"
    assert long[-1][1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert limited.status == 429 and limited.headers["retry-after"] == "3"
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"
    assert failed[-1][0] == "response.failed"
    assert failed[-1][1]["response"]["error"]["code"] == "server_is_overloaded"


def gemini_body(results: int = 0) -> dict:
    contents: list[dict] = [{"role": "user", "parts": [{"text": "go"}]}]
    for _ in range(results):
        contents += [{"role": "model", "parts": [{"functionCall": {"name": "write", "args": {}}}]},
                     {"role": "user", "parts": [{"functionResponse": {
                         "name": "write", "response": {"output": "ok"}}}]}]
    return {"contents": contents, "systemInstruction": {"parts": [{"text": "You are gemini."}]},
            "tools": [{"functionDeclarations": [{"name": "write"}]}]}


def test_gemini_stream_function_call_text_and_count_tokens() -> None:
    path = "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse"
    with ModelServer([Rule(match="go", reply=SCRIPT)]) as server:
        first = request(server.url, path, gemini_body()).events()
        second = request(server.url, path, gemini_body(1)).events()
        whole = request(server.url, "/v1beta/models/gemini-2.5-pro:generateContent",
                        gemini_body(1)).json()
        counted = request(server.url, "/v1beta/models/gemini-2.5-pro:countTokens",
                          gemini_body()).json()
        server.fail_next(overloaded())
        busy = request(server.url, path, gemini_body())
    (only,) = first
    candidate = only[1]["candidates"][0]
    assert candidate["content"]["parts"] == [{"functionCall": {
        "name": "write", "args": {"path": "a.py", "content": "x = 1\n" * 4}}}]
    assert candidate["finishReason"] == "STOP" and only[1]["usageMetadata"]["promptTokenCount"]
    parts = [p for _, chunk in second for p in chunk["candidates"][0]["content"]["parts"]]
    assert "".join(p["text"] for p in parts if p.get("thought")) == "ok"
    assert "".join(p["text"] for p in parts if not p.get("thought")) == "all done, " * 6
    assert "finishReason" not in second[0][1]["candidates"][0]
    assert whole["candidates"][0]["content"]["parts"][-1] == {"text": "all done, " * 6}
    assert counted["totalTokens"] > 0
    assert busy.status == 529 and busy.json()["error"]["status"] == "UNAVAILABLE"
    sent = server.model_requests()
    assert [(r.model, r.view.stream, r.view.tool_turns) for r in sent] == [
        ("gemini-2.5-pro", True, 0), ("gemini-2.5-pro", True, 1), ("gemini-2.5-pro", False, 1),
        ("gemini-2.5-pro", True, 0)]


def chat_body(stream: bool = True, tools: int = 0) -> dict:
    messages: list[dict] = [{"role": "system", "content": "You are aider."},
                            {"role": "user", "content": "go"}]
    for i in range(tools):
        messages += [{"role": "assistant", "content": None, "tool_calls": [
            {"id": f"c{i}", "type": "function", "function": {"name": "write", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": f"c{i}", "content": "ok"}]
    return {"model": "gpt-4.1", "stream": stream, "messages": messages,
            "stream_options": {"include_usage": True}}


def test_chat_completions_stream_and_json() -> None:
    with ModelServer([Rule(match="go", reply=SCRIPT)]) as server:
        first = request(server.url, "/v1/chat/completions", chat_body()).events()
        second = request(server.url, "/v1/chat/completions", chat_body(tools=1)).events()
        whole = request(server.url, "/v1/chat/completions", chat_body(False, 0)).json()
    assert first[-1] == (None, "[DONE]")
    assert first[-2][1]["choices"] == [] and first[-2][1]["usage"]["prompt_tokens"] > 0
    calls = [c for _, e in first[:-2] for c in e["choices"][0]["delta"].get("tool_calls", [])]
    assert calls[0]["function"]["name"] == "write"
    assert json.loads("".join(c["function"]["arguments"] for c in calls)) == {
        "path": "a.py", "content": "x = 1\n" * 4}
    assert first[-3][1]["choices"][0]["finish_reason"] == "tool_calls"
    content = "".join(e["choices"][0]["delta"].get("content") or "" for _, e in second[:-2])
    assert content == "all done, " * 6
    assert second[-3][1]["choices"][0]["finish_reason"] == "stop"
    message = whole["choices"][0]["message"]
    assert whole["object"] == "chat.completion" and message["tool_calls"][0]["id"]
    assert whole["choices"][0]["finish_reason"] == "tool_calls"
    assert [r.view.tool_turns for r in server.model_requests()] == [0, 1, 0]
