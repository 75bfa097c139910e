"""The scripted model server itself (Anthropic dialect), through a real HTTP client."""

from __future__ import annotations

import json
import threading
import time

import pytest

from tests.support.http_client import request
from tests.support.model_server import (
    ModelServer,
    Rule,
    auth_error,
    cut_stream,
    hang,
    overloaded,
    rate_limited,
    server_error,
    slow_stream,
    stream_error,
    text,
    thinking,
    tool_use,
    turns,
)


def body(prompt: str = "hello", *, stream: bool = True, model: str = "claude-sonnet-5-5",
         history: list[dict] | None = None) -> dict:
    messages = [{"role": "user", "content": [{"type": "text", "text": prompt}]}, *(history or [])]
    return {"model": model, "max_tokens": 1024, "stream": stream,
            "system": [{"type": "text", "text": "You are a test."}], "messages": messages}


def tool_round(n: int) -> list[dict]:
    """``n`` assistant tool_use + user tool_result exchanges."""
    out: list[dict] = []
    for i in range(n):
        out.append({"role": "assistant", "content": [
            {"type": "tool_use", "id": f"t{i}", "name": "Bash", "input": {"command": "true"}}]})
        out.append({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": f"t{i}", "content": "ok", "is_error": False}]})
    return out


def assemble(events: list) -> dict:
    """Rebuild the message from SSE events as an SDK would."""
    message: dict = {}
    blocks: dict[int, dict] = {}
    partial: dict[int, str] = {}
    for name, data in events:
        assert name == data["type"]
        if name == "message_start":
            message = data["message"]
        elif name == "content_block_start":
            blocks[data["index"]] = dict(data["content_block"])
        elif name == "content_block_delta":
            delta, block = data["delta"], blocks[data["index"]]
            if delta["type"] == "text_delta":
                block["text"] += delta["text"]
            elif delta["type"] == "input_json_delta":
                partial[data["index"]] = partial.get(data["index"], "") + delta["partial_json"]
            elif delta["type"] == "thinking_delta":
                block["thinking"] += delta["thinking"]
            elif delta["type"] == "signature_delta":
                block["signature"] = delta["signature"]
        elif name == "content_block_stop":
            if data["index"] in partial:
                blocks[data["index"]]["input"] = json.loads(partial[data["index"]])
        elif name == "message_delta":
            message["stop_reason"] = data["delta"]["stop_reason"]
            message["usage"]["output_tokens"] = data["usage"]["output_tokens"]
    message["content"] = [blocks[i] for i in sorted(blocks)]
    return message


def test_streams_text_in_the_messages_api_event_order() -> None:
    with ModelServer([Rule(match="hello", reply=text("Hi there, " * 10))]) as server:
        resp = request(server.url, "/v1/messages?beta=true", body())
    assert resp.status == 200 and resp.headers["content-type"].startswith("text/event-stream")
    events = resp.events()
    names = [n for n, _ in events]
    assert names[:3] == ["message_start", "ping", "content_block_start"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert names.count("content_block_delta") > 1  # the text comes in pieces
    message = assemble(events)
    assert message["content"] == [{"type": "text", "text": "Hi there, " * 10}]
    assert message["stop_reason"] == "end_turn"
    assert message["usage"]["input_tokens"] > 0 and message["usage"]["output_tokens"] > 0
    assert message["model"] == "claude-sonnet-5-5"


def test_tool_use_input_arrives_as_several_json_deltas() -> None:
    tool_input = {"file_path": "/tmp/x/a.py", "content": "print('a')\n" * 5}
    with ModelServer([Rule(reply=tool_use("Write", tool_input, say="Writing."))]) as server:
        events = request(server.url, "/v1/messages", body()).events()
    json_deltas = [d for n, d in events if n == "content_block_delta"
                   and d["delta"]["type"] == "input_json_delta"]
    assert len(json_deltas) > 3
    message = assemble(events)
    assert message["stop_reason"] == "tool_use"
    assert message["content"][0] == {"type": "text", "text": "Writing."}
    use = message["content"][1]
    assert use["type"] == "tool_use" and use["name"] == "Write" and use["input"] == tool_input
    assert use["id"].startswith("toolu_")


def test_thinking_block_has_thinking_and_signature_deltas() -> None:
    with ModelServer([Rule(reply=thinking("Let me see.", text("Done.")))]) as server:
        events = request(server.url, "/v1/messages", body()).events()
    kinds = [d["delta"]["type"] for n, d in events if n == "content_block_delta"]
    assert "thinking_delta" in kinds and "signature_delta" in kinds
    content = assemble(events)["content"]
    assert content[0]["type"] == "thinking" and content[0]["thinking"] == "Let me see."
    assert content[0]["signature"] and content[1] == {"type": "text", "text": "Done."}


def test_non_streaming_answer_and_count_tokens() -> None:
    with ModelServer([Rule(reply=tool_use("Read", {"file_path": "/a"}))]) as server:
        resp = request(server.url, "/v1/messages", body(stream=False))
        counted = request(server.url, "/v1/messages/count_tokens", body(stream=False))
    message = resp.json()
    assert resp.status == 200 and message["type"] == "message"
    assert message["stop_reason"] == "tool_use"
    assert message["content"][0]["input"] == {"file_path": "/a"}
    assert counted.status == 200 and counted.json()["input_tokens"] > 0
    assert [r.kind for r in server.requests] == ["generate", "count_tokens"]


def test_turns_follow_the_tool_results_in_each_request() -> None:
    script = turns([tool_use("Read", {"file_path": "/a"}), tool_use("Bash", {"command": "x"}),
                    text("finished")])
    with ModelServer([Rule(match="work", reply=script)]) as server:
        # two conversations at different points, in any order: no shared state
        late = assemble(request(server.url, "/v1/messages", body("work", history=tool_round(2)))
                        .events())
        early = assemble(request(server.url, "/v1/messages", body("work")).events())
        middle = assemble(request(server.url, "/v1/messages", body("work", history=tool_round(1)))
                          .events())
        beyond = assemble(request(server.url, "/v1/messages", body("work", history=tool_round(5)))
                          .events())
    assert late["content"] == [{"type": "text", "text": "finished"}]
    assert early["content"][0]["name"] == "Read"
    assert middle["content"][0]["name"] == "Bash"
    assert beyond["content"][0]["text"] == "finished"  # the last step repeats
    assert [r.view.tool_turns for r in server.model_requests()] == [2, 0, 1, 5]


def test_rules_match_on_prompt_model_tool_result_and_times() -> None:
    rules = [
        Rule(name="once", match="alpha", times=1, reply=text("first alpha")),
        Rule(name="haiku", model="haiku", reply=text("small model")),
        Rule(name="after-tool", tool_result=True, reply=text("saw a tool result")),
        Rule(name="alpha", match="alpha", reply=text("later alpha")),
    ]
    with ModelServer(rules, default=text("default")) as server:
        def ask(**kw: object) -> str:
            msg = assemble(request(server.url, "/v1/messages", body(**kw)).events())  # type: ignore[arg-type]
            return msg["content"][0]["text"]

        assert ask(prompt="alpha") == "first alpha"
        assert ask(prompt="alpha") == "later alpha"
        assert ask(prompt="beta", model="claude-haiku-4-5") == "small model"
        assert ask(prompt="beta", history=tool_round(1)) == "saw a tool result"
        assert ask(prompt="beta") == "default"
    assert [r.rule for r in server.model_requests()] == ["once", "alpha", "haiku", "after-tool",
                                                         None]


@pytest.mark.parametrize(("fault", "status", "error_type"), [
    (rate_limited(2), 429, "rate_limit_error"),
    (overloaded(), 529, "overloaded_error"),
    (server_error(), 500, "api_error"),
    (auth_error(), 401, "authentication_error"),
])
def test_http_faults_use_anthropic_error_bodies(fault, status: int, error_type: str) -> None:
    with ModelServer([Rule(reply=text("fine"))]) as server:
        server.fail_next(fault, n=2)
        first = request(server.url, "/v1/messages", body())
        second = request(server.url, "/v1/messages", body())
        third = request(server.url, "/v1/messages", body())
    for resp in (first, second):
        assert resp.status == status
        err = resp.json()
        assert err["type"] == "error" and err["error"]["type"] == error_type
        assert err["error"]["message"]
    assert (first.headers.get("retry-after") == "2") == (status == 429)
    assert third.status == 200 and assemble(third.events())["content"][0]["text"] == "fine"
    assert [r.status for r in server.model_requests()] == [status, status, 200]
    assert [r.fault for r in server.model_requests()] == ["http", "http", None]


def test_cut_stream_drops_the_connection_mid_message() -> None:
    with ModelServer([Rule(reply=text("x" * 400), fault=cut_stream(after_events=4), times=1),
                      Rule(reply=text("whole"))]) as server:
        cut = request(server.url, "/v1/messages", body())
        again = request(server.url, "/v1/messages", body())
    assert cut.status == 200 and not cut.complete
    names = [n for n, _ in cut.events()]
    assert names == ["message_start", "ping", "content_block_start", "content_block_delta"]
    assert "message_stop" in [n for n, _ in again.events()]


def test_stream_error_event_and_stop_reasons() -> None:
    rules = [
        Rule(match="overload", reply=text("partial answer"), fault=stream_error(after_events=3)),
        Rule(match="long", reply=text("cut short", stop_reason="max_tokens")),
        Rule(match="refuse", reply=text("", stop_reason="refusal")),
    ]
    with ModelServer(rules) as server:
        errored = request(server.url, "/v1/messages", body("overload")).events()
        long = assemble(request(server.url, "/v1/messages", body("long")).events())
        refused = assemble(request(server.url, "/v1/messages", body("refuse")).events())
    assert errored[-1] == ("error", {"type": "error", "error": {
        "type": "overloaded_error", "message": "Overloaded"}})
    assert "message_stop" not in [n for n, _ in errored]
    assert long["stop_reason"] == "max_tokens"
    assert refused["stop_reason"] == "refusal"


def test_slow_stream_delays_each_event() -> None:
    with ModelServer([Rule(reply=text("abc"), fault=slow_stream(0.05))]) as server:
        started = time.monotonic()
        resp = request(server.url, "/v1/messages", body())
        took = time.monotonic() - started
    assert resp.complete and len(resp.events()) == 7
    assert took >= 7 * 0.05


def test_hang_answers_nothing_until_the_server_stops() -> None:
    server = ModelServer([Rule(fault=hang())]).start()
    outcome: dict = {}

    def call() -> None:
        try:
            outcome["resp"] = request(server.url, "/v1/messages", body(), timeout=30)
        except Exception as exc:  # the connection closes without a response
            outcome["error"] = exc

    thread = threading.Thread(target=call)
    thread.start()
    assert server.wait_for(lambda s: len(s.requests) == 1, timeout=5)
    time.sleep(0.3)
    assert thread.is_alive()  # still waiting: no answer
    started = time.monotonic()
    server.stop()
    thread.join(timeout=5)
    assert not thread.is_alive() and time.monotonic() - started < 5
    assert "error" in outcome and "resp" not in outcome


def test_requests_are_recorded_without_secrets_and_unknown_paths_get_404() -> None:
    with ModelServer() as server:
        request(server.url, "/v1/messages?beta=true", body(),
                headers={"x-api-key": "sk-secret", "authorization": "Bearer sk-secret",
                         "anthropic-version": "2023-06-01"})
        missing = request(server.url, "/api/oauth/profile", method="GET")
    assert missing.status == 404 and missing.json()["error"]["type"] == "not_found_error"
    first = server.requests[0]
    assert first.path == "/v1/messages" and first.query == "beta=true"
    assert first.headers["x-api-key"] == "<redacted>"
    assert first.headers["authorization"] == "<redacted>"
    assert first.headers["anthropic-version"] == "2023-06-01"
    assert first.body["messages"][0]["content"][0]["text"] == "hello"
    assert "sk-secret" not in repr(server.requests)
    assert server.unknown == [("GET", "/api/oauth/profile")]


def test_concurrent_conversations_each_get_their_own_step() -> None:
    script = turns([text(f"step {i}") for i in range(4)])
    with ModelServer([Rule(match="work", reply=script, fault=slow_stream(0.02))]) as server:
        answers: dict[int, str] = {}

        def converse(position: int) -> None:
            resp = request(server.url, "/v1/messages", body("work", history=tool_round(position)))
            answers[position] = assemble(resp.events())["content"][0]["text"]

        threads = [threading.Thread(target=converse, args=(i % 4,)) for i in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
    assert answers == {i: f"step {i}" for i in range(4)}
    assert len(server.model_requests()) == 12


def test_an_unreadable_body_is_recorded_and_answered_400() -> None:
    with ModelServer() as server:
        resp = request(server.url, "/v1/messages", body(),
                       headers={"content-encoding": "gzip"})  # the body is not gzip
    assert resp.status == 400 and resp.json()["type"] == "error"
    (entry,) = server.requests
    assert entry.status == 400 and str(entry.body).startswith("<unreadable body:")
