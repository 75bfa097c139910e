"""Loopback doubles for the notification targets: a webhook receiver and a minimal Telegram
Bot API (``POST /bot<token>/sendMessage``). Both record every request; ``fail_next(n,
status)`` makes the next ``n`` answers fail, ``delay`` slows every answer.

(The approvals' fuller Bot API double lives on the hitl-channels branch as
``tests/support/telegram_api.py``; this one only answers ``sendMessage``.)
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    body: Any
    ts: float


class _Handler(BaseHTTPRequestHandler):
    server: LoopbackReceiver

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    def do_POST(self) -> None:
        size = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(size)
        try:
            body: Any = json.loads(raw or b"null")
        except ValueError:
            body = raw.decode("utf-8", "replace")
        status, answer = self.server.answer(self.path, body)
        if self.server.delay:
            time.sleep(self.server.delay)
        data = json.dumps(answer).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (its timeout): what a slow target does


class LoopbackReceiver(ThreadingHTTPServer):
    """``with LoopbackReceiver() as r: r.url``; ``r.received`` (successful ones),
    ``r.attempts`` (every request)."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.received: list[Received] = []
        self.attempts: list[Received] = []
        self.delay = 0.0
        self._fail: list[int] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def fail_next(self, n: int, status: int = 500) -> None:
        with self._lock:
            self._fail.extend([status] * n)

    def answer(self, path: str, body: Any) -> tuple[int, Any]:
        entry = Received(path, body, time.time())
        with self._lock:
            self.attempts.append(entry)
            if self._fail:
                return self._fail.pop(0), {"ok": False, "description": "scripted failure"}
            self.received.append(entry)
        return 200, self.reply(path, body)

    def reply(self, path: str, body: Any) -> Any:
        return {"ok": True}

    def wait_for(self, count: int, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.received) >= count:
                return True
            time.sleep(0.02)
        return len(self.received) >= count

    def __enter__(self) -> LoopbackReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()


class TelegramBotDouble(LoopbackReceiver):
    """Answers ``sendMessage`` like the Bot API (``{"ok": true, "result": Message}``) for the
    one ``token``; any other token gets 401 like the real one."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token
        self._message_id = 0

    def answer(self, path: str, body: Any) -> tuple[int, Any]:
        if path != f"/bot{self.token}/sendMessage":
            with self._lock:
                self.attempts.append(Received(path, body, time.time()))
            return 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
        return super().answer(path, body)

    def reply(self, path: str, body: Any) -> Any:
        self._message_id += 1
        return {"ok": True, "result": {"message_id": self._message_id, "date": int(time.time()),
                                       "chat": {"id": body.get("chat_id")}, "text": body.get("text")}}
