"""A Telegram Bot API server double on loopback, for the Telegram approval channel's tests.

Implements ``sendMessage``, ``editMessageText``, ``getUpdates`` (long polling, ``offset``
confirms earlier updates) and ``answerCallbackQuery`` with the real request and response
shapes (https://core.telegram.org/bots/api): ``POST /bot<token>/<method>`` with a JSON or
form body, answered ``{"ok": true, "result": ...}`` or ``{"ok": false, "error_code",
"description"}`` (401 for a wrong token, 400 for a bad request). It records every request
(method, params, the token it came with) and can inject button presses
(:meth:`BotApiDouble.press`), from the bot's chat or from any other, and failures
(:meth:`BotApiDouble.fail_next`).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

MAX_WAIT = 2.0  # a long poll of the double returns after this long at most


@dataclass
class Request:
    method: str
    params: dict[str, Any]
    token: str


@dataclass
class BotApiDouble:
    token: str
    requests: list[Request] = field(default_factory=list)
    messages: dict[int, dict[str, Any]] = field(default_factory=dict)  # message_id -> Message
    updates: list[dict[str, Any]] = field(default_factory=list)
    failures: list[tuple[int, str]] = field(default_factory=list)
    _next_message: int = 100
    _next_update: int = 1
    _lock: threading.Condition = field(default_factory=threading.Condition)

    def start(self) -> BotApiDouble:
        double = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode()
                if "json" in (self.headers.get("Content-Type") or ""):
                    params = json.loads(raw or "{}")
                else:
                    params = dict(parse_qsl(raw))
                status, body = double.handle(self.path, params)
                data = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a long poll cancelled at the mission's end)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # ------------------------------------------------------------------ the API
    def handle(self, path: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        parts = path.strip("/").split("/")
        if len(parts) != 2 or not parts[0].startswith("bot"):
            return 404, {"ok": False, "error_code": 404, "description": "Not Found"}
        token, method = parts[0][3:], parts[1]
        with self._lock:
            self.requests.append(Request(method, params, token))
            if token != self.token:
                return 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
            if self.failures:
                code, description = self.failures.pop(0)
                return code, {"ok": False, "error_code": code, "description": description}
        handler = getattr(self, f"_{method}", None)
        if handler is None:
            return 404, {"ok": False, "error_code": 404, "description": "Not Found: method not found"}
        try:
            return 200, {"ok": True, "result": handler(params)}
        except ValueError as exc:
            return 400, {"ok": False, "error_code": 400, "description": f"Bad Request: {exc}"}

    def _sendMessage(self, params: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        if not params.get("chat_id") or not params.get("text"):
            raise ValueError("chat_id and text are required")
        with self._lock:
            self._next_message += 1
            message = {
                "message_id": self._next_message, "date": int(time.time()),
                "from": {"id": 1, "is_bot": True, "first_name": "mc", "username": "mc_bot"},
                "chat": {"id": int(params["chat_id"]), "type": "private"},
                "text": params["text"],
            }
            if params.get("reply_markup"):
                message["reply_markup"] = params["reply_markup"]
            self.messages[message["message_id"]] = message
        return message

    def _editMessageText(self, params: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        with self._lock:
            message = self.messages.get(int(params.get("message_id", 0)))
            if message is None or str(message["chat"]["id"]) != str(params.get("chat_id")):
                raise ValueError("message to edit not found")
            if message["text"] == params.get("text") and \
                    message.get("reply_markup") == params.get("reply_markup"):
                raise ValueError("message is not modified")
            message["text"] = params["text"]
            message.pop("reply_markup", None)
            if params.get("reply_markup"):
                message["reply_markup"] = params["reply_markup"]
            message["edit_date"] = int(time.time())
            return dict(message)

    def _getUpdates(self, params: dict[str, Any]) -> list[dict[str, Any]]:  # noqa: N802
        offset = int(params.get("offset") or 0)
        deadline = time.monotonic() + min(float(params.get("timeout") or 0), MAX_WAIT)
        with self._lock:
            if offset:  # confirms every update below it
                self.updates = [u for u in self.updates if u["update_id"] >= offset]
            while not self.updates and time.monotonic() < deadline:
                self._lock.wait(deadline - time.monotonic())
            return list(self.updates)

    def _answerCallbackQuery(self, params: dict[str, Any]) -> bool:  # noqa: N802
        if not params.get("callback_query_id"):
            raise ValueError("callback_query_id is required")
        return True

    # ------------------------------------------------------------------ test controls
    def press(self, message_id: int, data: str, *, chat_id: int | None = None,
              username: str = "alice") -> str:
        """A button press (a ``callback_query`` update) on a message, from its own chat or
        from ``chat_id``; returns the callback query id."""
        with self._lock:
            message = self.messages[message_id]
            chat = {"id": chat_id if chat_id is not None else message["chat"]["id"],
                    "type": "private"}
            query_id = f"cq{self._next_update}"
            self.updates.append({
                "update_id": self._next_update,
                "callback_query": {
                    "id": query_id, "chat_instance": "1",
                    "from": {"id": 7, "is_bot": False, "first_name": username.title(),
                             "username": username},
                    "message": {**{k: v for k, v in message.items() if k != "chat"}, "chat": chat},
                    "data": data,
                },
            })
            self._next_update += 1
            self._lock.notify_all()
        return query_id

    def fail_next(self, code: int = 502, description: str = "Bad Gateway", times: int = 1) -> None:
        with self._lock:
            self.failures += [(code, description)] * times

    def calls(self, method: str) -> list[dict[str, Any]]:
        with self._lock:
            return [r.params for r in self.requests if r.method == method]

    def wait_for(self, method: str, count: int = 1, timeout: float = 30) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.calls(method)
            if len(found) >= count:
                return found
            time.sleep(0.02)
        raise AssertionError(f"no {count} {method} call(s); got {[r.method for r in self.requests]}")
