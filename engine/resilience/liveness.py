"""Is a mission's engine still alive? A live mission row (pending, running, paused) whose
heartbeat stopped is **lost**: its process died without closing it (kill -9, power loss, OOM).

The engine writes ``missions.heartbeat_at`` every ``engine.runner.HEARTBEAT_SECONDS`` (2 s)
from a daemon thread, whatever it is doing; a heartbeat older than :data:`LOST_AFTER_S`
means nobody owns the row any more. ``mc status``, the TUI and the web dashboard show such a
mission as ``lost`` with :func:`resume_command`. Nothing here writes to the store: a lost
mission becomes ``running`` again when it is resumed (``engine/mission.py``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

LOST_AFTER_S = 30.0  # 15 missed heartbeats
LIVE_STATUSES = ("pending", "running", "paused")
LOST = "lost"


def is_lost(mission: Mapping[str, Any], now: float, *, after_s: float = LOST_AFTER_S) -> bool:
    """True when ``mission`` (a ``missions`` row) is live by status but its heartbeat
    (``heartbeat_at``, epoch seconds, written from the row's creation on) is older than
    ``after_s`` seconds at ``now`` (epoch seconds). A row without a heartbeat is not judged."""
    if mission.get("status") not in LIVE_STATUSES:
        return False
    beat = mission.get("heartbeat_at")
    return beat is not None and now - float(beat) > after_s


def newest_is_lost(store_path: Path, now: float) -> bool:
    """Whether the newest mission in the store at ``store_path`` is lost (read-only; False
    when there is no store, no mission or no schema)."""
    if not store_path.exists():
        return False
    try:
        conn = sqlite3.connect(f"{store_path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return False
    try:
        row = conn.execute("SELECT status, heartbeat_at FROM missions ORDER BY id DESC LIMIT 1"
                           ).fetchone()
    except sqlite3.Error:
        return False
    finally:
        conn.close()
    return row is not None and is_lost({"status": row[0], "heartbeat_at": row[1]}, now)


def shown_status(mission: Mapping[str, Any], now: float) -> str:
    """The status to show: ``lost`` for a lost mission, else the row's own status."""
    return LOST if is_lost(mission, now) else str(mission.get("status"))


def silent_for(mission: Mapping[str, Any], now: float) -> float:
    """Seconds since the last heartbeat of ``mission`` (0 when it has none)."""
    beat = mission.get("heartbeat_at")
    return max(0.0, now - float(beat)) if beat is not None else 0.0


def resume_command(config_path: str | None = None) -> str:
    """The command that takes a lost (or interrupted) mission up again."""
    return "mc mission --resume" + (f" --config {config_path}" if config_path else "")
