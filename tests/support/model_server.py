"""A scripted model server on 127.0.0.1 for running real agent CLIs offline in tests.

Stable API (other test helpers build on it)::

    from tests.support.model_server import ModelServer, Rule, text, tool_use, turns, rate_limited

    with ModelServer([Rule(match="You are a worker", reply=turns([...]))]) as server:
        env = {"ANTHROPIC_BASE_URL": server.url, ...}   # or tests.support.real_clis.claude_env
        ...
        server.requests          # every request: RecordedRequest(method, path, query, headers,
                                 #   body, dialect, model, rule, fault, status)
        server.model_requests()  # only the generation requests (POST /v1/messages, ...)
        server.fail_next(rate_limited(1), n=2)   # the next 2 generation requests get a 429

- ``ModelServer(rules, default=text("OK"), host="127.0.0.1", port=0)``; ``.url`` is
  ``http://127.0.0.1:<port>``; ``start()`` / ``stop()`` or use it as a context manager; the
  pytest fixture ``model_server`` (in :mod:`tests.support.fixtures`) gives a started one.
- Rules (:class:`tests.support.script.Rule`) are tried in order: the first matching rule with
  a ``fault`` supplies the fault, the first matching rule whose reply resolves supplies the
  reply; none gives ``default``. ``server.add(rule)`` appends, ``server.rules`` is a list.
- Faults (:mod:`tests.support.script`): ``rate_limited(retry_after)`` (429),
  ``overloaded()`` (529), ``server_error()`` (500), ``auth_error()`` (401),
  ``http_error(status, ...)``, ``cut_stream(after_events)``, ``slow_stream(delay)``,
  ``hang()`` (answers nothing until the server stops), ``stream_error(after_events)``;
  stop reasons ``max_tokens`` / ``refusal`` are a :class:`Reply`'s ``stop_reason``.
- Dialects (``RecordedRequest.dialect``, ``Rule(dialect=...)``), one module each in
  :mod:`tests.support.dialects`: ``anthropic`` (``POST /v1/messages[?beta=true]``,
  ``/v1/messages/count_tokens``; Claude Code), ``openai-responses`` (``POST .../responses``;
  codex), ``gemini`` (``POST /v1beta/models/{model}:streamGenerateContent?alt=sse``,
  ``:generateContent``, ``:countTokens``; gemini-cli), ``openai-chat``
  (``POST .../chat/completions``; aider). Any other path is recorded in ``server.unknown``
  and gets a 404 with an Anthropic error body.

Secrets in headers (``x-api-key``, ``authorization``, ...) are recorded as ``<redacted>``.
Ready-made scripts for a small mission are in :mod:`tests.support.scripts`.
"""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from tests.support.dialects import anthropic, gemini, openai_chat, openai_responses
from tests.support.script import (  # noqa: F401  (re-exported: the public scripting API)
    Fault,
    ModelRequest,
    Reply,
    Rule,
    Text,
    Thinking,
    ToolUse,
    Turns,
    Usage,
    auth_error,
    custom_tool,
    cut_stream,
    hang,
    http_error,
    overloaded,
    rate_limited,
    reply,
    server_error,
    slow_stream,
    stream_error,
    text,
    thinking,
    tool_use,
    turns,
    usage_limit_reached,
)

SECRET_HEADERS = frozenset({
    "x-api-key", "authorization", "proxy-authorization", "cookie", "x-goog-api-key", "api-key",
})
SECRET_QUERY = frozenset({"key", "api_key", "access_token"})
REDACTED = "<redacted>"


@dataclass
class RecordedRequest:
    """One request as the server saw it (secrets redacted)."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: Any  # decoded JSON, or the text when it is not JSON, or None
    dialect: str | None = None
    kind: str | None = None  # "generate", "count_tokens" or None (unknown path)
    model: str | None = None
    rule: str | None = None
    fault: str | None = None
    status: int | None = None
    view: ModelRequest | None = field(default=None, repr=False)
    at: float = field(default_factory=time.time)


@dataclass
class _PendingFault:
    fault: Fault
    remaining: int
    dialect: str | None


class _Route:
    def __init__(self, method: str, match: Callable[[str], bool], dialect: Any, kind: str) -> None:
        self.method, self.match, self.dialect, self.kind = method, match, dialect, kind


ROUTES = [
    _Route("POST", lambda p: p.rstrip("/") == "/v1/messages", anthropic, "generate"),
    _Route("POST", lambda p: p.rstrip("/") == "/v1/messages/count_tokens", anthropic,
           "count_tokens"),
    _Route("POST", lambda p: p.rstrip("/").endswith("/responses"), openai_responses, "generate"),
    _Route("POST", lambda p: p.rstrip("/").endswith("/chat/completions"), openai_chat,
           "generate"),
    _Route("POST", lambda p: (gemini.route(p) or ("", ""))[1] in (
        "streamGenerateContent", "generateContent"), gemini, "generate"),
    _Route("POST", lambda p: (gemini.route(p) or ("", ""))[1] == "countTokens", gemini,
           "count_tokens"),
]


class ModelServer:
    """The scripted server; see the module docstring."""

    def __init__(self, rules: Iterable[Rule] = (), *, default: Reply | None = None,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.rules: list[Rule] = list(rules)
        self.default = default if default is not None else text("OK")
        self.requests: list[RecordedRequest] = []
        self.unknown: list[tuple[str, str]] = []
        self._host, self._port = host, port
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._pending: list[_PendingFault] = []
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the model server is not started")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> ModelServer:
        handler = type("Handler", (_Handler,), {"model_server": self})
        httpd = ThreadingHTTPServer((self._host, self._port), handler)
        httpd.daemon_threads = True
        httpd.block_on_close = False  # hung handlers must not block stop()
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="model-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ModelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ scripting
    def add(self, *rules: Rule) -> None:
        """Append rules (tried after the existing ones)."""
        with self._lock:
            self.rules.extend(rules)

    def prepend(self, *rules: Rule) -> None:
        """Insert rules in front of the existing ones."""
        with self._lock:
            self.rules[:0] = rules

    def fail_next(self, fault: Fault, n: int = 1, *, dialect: str | None = None) -> None:
        """Apply ``fault`` to the next ``n`` generation requests (of ``dialect`` if given)."""
        with self._lock:
            self._pending.append(_PendingFault(fault, n, dialect))

    def clear_faults(self) -> None:
        with self._lock:
            self._pending.clear()

    def model_requests(self, dialect: str | None = None) -> list[RecordedRequest]:
        """The generation requests recorded so far (of ``dialect`` if given)."""
        with self._lock:
            return [r for r in self.requests if r.kind == "generate"
                    and (dialect is None or r.dialect == dialect)]

    def wait_for(self, predicate: Callable[[ModelServer], bool], timeout: float = 10.0) -> bool:
        """Poll ``predicate(self)`` until it holds or ``timeout`` seconds pass."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return True
            time.sleep(0.02)
        return predicate(self)

    def _decide(self, view: ModelRequest) -> tuple[Reply, Fault | None, str | None]:
        with self._lock:
            fault: Fault | None = None
            for pending in self._pending:
                if pending.remaining > 0 and pending.dialect in (None, view.dialect):
                    pending.remaining -= 1
                    fault = pending.fault
                    break
            self._pending = [p for p in self._pending if p.remaining > 0]
            chosen: Reply | None = None
            names: list[str] = []
            for index, rule in enumerate(self.rules):
                if not rule.matches(view):
                    continue
                took = False
                if rule.fault is not None and fault is None:
                    fault, took = rule.fault, True
                if chosen is None:
                    resolved = rule.resolve(view)
                    if resolved is not None:
                        chosen, took = resolved, True
                if took:
                    rule.hits += 1
                    names.append(rule.name or f"rule{index}")
                if chosen is not None and fault is not None:
                    break
            return (chosen or self.default), fault, ",".join(names) or None

    def _record(self, entry: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(entry)
            if entry.kind is None:
                self.unknown.append((entry.method, entry.path))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    model_server: ModelServer  # set on the subclass made per server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        return

    # every method goes through one place
    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def do_HEAD(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                data += self.rfile.read(size)
                self.rfile.readline()
        else:
            data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        encoding = self.headers.get("Content-Encoding", "").lower()
        if encoding == "gzip":
            data = gzip.decompress(data)
        elif encoding == "deflate":
            data = zlib.decompress(data)
        return data

    def _serve(self) -> None:
        server = self.model_server
        parts = urlsplit(self.path)
        body: Any = None
        try:
            raw = self._read_body() if self.command not in ("GET", "HEAD") else b""
        except (OSError, ValueError, zlib.error) as exc:  # bad chunking or compression
            raw, body = b"", f"<unreadable body: {exc}>"
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
        query = urlencode([(k, REDACTED if k.lower() in SECRET_QUERY else v)
                           for k, v in parse_qsl(parts.query, keep_blank_values=True)])
        headers = {k.lower(): (REDACTED if k.lower() in SECRET_HEADERS else v)
                   for k, v in self.headers.items()}
        entry = RecordedRequest(self.command, parts.path, query, headers, body)
        route = next((r for r in ROUTES if r.method == self.command and r.match(parts.path)), None)
        if route is None or not isinstance(body, dict):
            entry.status = 404 if route is None else 400
            server._record(entry)
            status = entry.status
            self._send_json(status, anthropic.error_body(
                status, message=f"{self.command} {parts.path} is not scripted" if status == 404
                else "the body must be a JSON object"))
            return
        dialect = route.dialect
        entry.dialect, entry.kind = dialect.NAME, route.kind
        if route.kind == "count_tokens":
            entry.model, entry.status = str(body.get("model", "")), 200
            server._record(entry)
            self._send_json(200, dialect.count_tokens(body))
            return
        view = dialect.parse(parts.path, body)
        entry.view, entry.model = view, view.model
        answer, fault, rule_names = server._decide(view)
        entry.rule, entry.fault = rule_names, fault.kind if fault else None
        as_http = fault is not None and (fault.kind == "http" or (
            fault.kind == "stream_error" and not view.stream))
        entry.status = fault.status if fault is not None and as_http else 200
        server._record(entry)
        self._answer(dialect, view, answer, fault)

    # ------------------------------------------------------------------ answering
    def _answer(self, dialect: Any, view: ModelRequest, answer: Reply, fault: Fault | None) -> None:
        if fault is not None and fault.kind == "hang":
            self.model_server._stopping.wait()
            self.close_connection = True
            return
        if fault is not None and (fault.kind == "http" or (fault.kind == "stream_error"
                                                           and not view.stream)):
            # a stream_error on a non-streaming request is that status as an HTTP error
            extra = {}
            if fault.retry_after is not None:
                extra["retry-after"] = f"{fault.retry_after:g}"
            if fault.status == 429:
                extra["anthropic-ratelimit-requests-remaining"] = "0"
            extra.update(fault.headers)
            self._send_json(fault.status, dialect.error_body(fault.status, fault.error_type,
                                                             fault.message), extra)
            return
        if not view.stream:
            body = json.dumps(dialect.message_json(answer, view)).encode()
            if fault is not None and fault.kind == "cut":
                self._start(200, "application/json", {"Content-Length": str(len(body))})
                self.wfile.write(body[: len(body) // 2])
                self._drop()
                return
            if fault is not None and fault.kind == "slow":
                time.sleep(fault.delay)
            self._send_bytes(200, "application/json", body)
            return
        events = dialect.sse_events(answer, view)
        self._start(200, "text/event-stream; charset=utf-8",
                    {"Transfer-Encoding": "chunked", "Cache-Control": "no-cache"})
        try:
            for index, (name, data) in enumerate(events):
                if fault is not None and fault.kind in ("cut", "stream_error") \
                        and index == fault.after_events:
                    if fault.kind == "cut":
                        self._drop()
                        return
                    self._chunk(_sse(*dialect.stream_error_event(fault.status)))
                    break
                if fault is not None and fault.kind == "slow" and fault.delay \
                        and self.model_server._stopping.wait(fault.delay):
                    self._drop()  # the server is stopping
                    return
                self._chunk(_sse(name, data))
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _start(self, status: int, content_type: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("request-id", anthropic.new_id("req"))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()

    def _send_bytes(self, status: int, content_type: str, body: bytes,
                    extra: dict[str, str] | None = None) -> None:
        self._start(status, content_type, {**(extra or {}), "Content-Length": str(len(body))})
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, status: int, obj: Any, extra: dict[str, str] | None = None) -> None:
        self._send_bytes(status, "application/json", json.dumps(obj).encode(), extra)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _drop(self) -> None:
        """Close the connection abruptly (no terminating chunk)."""
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _sse(name: str | None, data: Any) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data)
    head = f"event: {name}\n" if name else ""
    return f"{head}data: {payload}\n\n".encode()

