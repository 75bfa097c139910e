"""Streamable HTTP for the MCP server: bind rules, bearer-token auth, uvicorn.

Security model: the server binds ``127.0.0.1`` by default; any non-loopback address is refused
(:class:`BindRefused`) unless a token is configured. The token comes only from the environment
(``MC_MCP_TOKEN``, else ``MC_SERVICES_TOKEN``; ``--token-env`` names another variable). With
a token, every HTTP request must carry ``Authorization: Bearer <token>`` (compared with
``hmac.compare_digest``); others get 401 and nothing else. The SDK's DNS-rebinding protection
(Host / Origin checks) stays on for loopback binds.
"""

from __future__ import annotations

import hmac
import json
import os
from collections.abc import Callable
from typing import Any

from engine.services.net import ASGIApp, BindRefused, Receive, Scope, Send, is_loopback

TOKEN_ENVS = ("MC_MCP_TOKEN", "MC_SERVICES_TOKEN")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8766  # [a2a] port is 8765, mc live 8780
MCP_PATH = "/mcp"

def token_from_env(names: tuple[str, ...] = TOKEN_ENVS) -> tuple[str | None, str | None]:
    """(token, the variable it came from) of the first non-empty variable in ``names``."""
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return value, name
    return None, None


def check_bind(host: str, token: str | None, token_names: tuple[str, ...] = TOKEN_ENVS) -> None:
    """Raise :class:`BindRefused` for a non-loopback ``host`` without a token."""
    if token is None and not is_loopback(host):
        raise BindRefused(
            f"refusing to serve MCP on {host}: binding a non-loopback address needs a bearer "
            f"token (set {' or '.join(token_names)} in the environment)")


class BearerAuth:
    """ASGI middleware: every HTTP request needs ``Authorization: Bearer <token>``."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        given = b""
        for key, value in scope.get("headers", ()):
            if key == b"authorization":
                given = value
                break
        if hmac.compare_digest(given, self._expected):
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":  # a websocket (none are served): closed, policy violation
            await send({"type": "websocket.close", "code": 1008})
            return
        body = json.dumps({"error": "unauthorized: a valid bearer token is required"}).encode()
        await send({"type": "http.response.start", "status": 401, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"www-authenticate", b'Bearer realm="mission-control"')]})
        await send({"type": "http.response.body", "body": body})


def http_app(server: Any, *, host: str, token: str | None) -> ASGIApp:
    """The SDK's streamable HTTP app at ``/mcp``, behind :class:`BearerAuth` when ``token``."""
    app: ASGIApp = server.streamable_http_app(streamable_http_path=MCP_PATH, host=host)
    return BearerAuth(app, token) if token else app


async def serve_http(server: Any, *, host: str, port: int, token: str | None,
                     ready: Callable[[str], None] | None = None) -> None:
    """Serve until cancelled (Ctrl-C). ``ready`` gets the URL once the socket listens."""
    import uvicorn

    config = uvicorn.Config(http_app(server, host=host, token=token), host=host, port=port,
                            log_level="warning", lifespan="on")
    userver = uvicorn.Server(config)

    if ready is not None:
        original = userver.startup

        async def startup(sockets: Any = None) -> None:
            await original(sockets=sockets)
            bound = port
            for srv in userver.servers:
                for sock in srv.sockets:
                    bound = sock.getsockname()[1]
            shown = f"[{host}]" if ":" in host else host
            ready(f"http://{shown}:{bound}{MCP_PATH}")

        userver.startup = startup  # type: ignore[method-assign]
    await userver.serve()
