"""Start ``mc live``: check the bind address and token, then run the app under uvicorn."""

from __future__ import annotations

import os

from engine.services.live.projects import ProjectSource
from engine.services.live.security import is_loopback


class LiveServerError(Exception):
    """A start-up problem phrased for the user (the CLI exits 2)."""


def bind_token(host: str, token_env: str) -> str | None:
    """The token from ``$token_env`` (``None`` when unset or empty). Raises
    :class:`LiveServerError` when ``host`` is not loopback and there is no token."""
    token = os.environ.get(token_env) or None
    if not is_loopback(host) and token is None:
        raise LiveServerError(
            f"refusing to bind {host}: only loopback (127.0.0.1, ::1, localhost) is served "
            f"without a token; set {token_env} in the environment (the token is read from "
            f"there only; `live.token_env` names the variable)")
    return token


def serve(source: ProjectSource, *, host: str, port: int, token_env: str) -> None:
    """Run until interrupted (Ctrl-C / SIGTERM)."""
    import uvicorn

    from engine.services.live.app import create_app

    token = bind_token(host, token_env)
    app = create_app(source, token=token)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                            lifespan="on", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    server.run()


__all__ = ["LiveServerError", "bind_token", "serve"]
