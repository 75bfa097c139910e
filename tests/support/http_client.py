"""A tiny standard-library client for testing the model server: POST JSON, parse SSE."""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    complete: bool = True  # False when the connection dropped before the body ended
    error: str | None = None

    def json(self) -> Any:
        return json.loads(self.body)

    def events(self) -> list[tuple[str | None, Any]]:
        return parse_sse(self.body.decode("utf-8", "replace"))


def parse_sse(stream: str) -> list[tuple[str | None, Any]]:
    """``(event name or None, data)`` per SSE event; data is decoded JSON when it parses."""
    events: list[tuple[str | None, Any]] = []
    for chunk in stream.replace("\r\n", "\n").split("\n\n"):
        name: str | None = None
        data: list[str] = []
        for line in chunk.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip())
        if name is None and not data:
            continue
        payload = "\n".join(data)
        try:
            events.append((name, json.loads(payload)))
        except ValueError:
            events.append((name, payload))
    return events


def request(url: str, path: str, body: Any = None, *, method: str = "POST",
            headers: dict[str, str] | None = None, timeout: float = 10.0) -> Response:
    """One request; a dropped connection gives ``complete=False`` with what arrived."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    data = None if body is None else json.dumps(body).encode()
    try:
        conn.request(method, path, body=data, headers={
            "content-type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        got_headers = {k.lower(): v for k, v in resp.getheaders()}
        chunks: list[bytes] = []
        try:
            while True:
                piece = resp.read1(65536) if hasattr(resp, "read1") else resp.read(65536)
                if not piece:
                    break
                chunks.append(piece)
        except (http.client.IncompleteRead, ConnectionError) as exc:
            return Response(resp.status, got_headers, b"".join(chunks), False, repr(exc))
        return Response(resp.status, got_headers, b"".join(chunks))
    finally:
        conn.close()
