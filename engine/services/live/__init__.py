"""``mc live``: the web dashboard (FastAPI + Server-Sent Events) following missions of every
registered project from their stores. See ``docs/services.md`` (Live web dashboard)."""

from engine.services.live.app import create_app
from engine.services.live.server import LiveServerError, serve

__all__ = ["LiveServerError", "create_app", "serve"]
