"""The A2A task -> mission mapping: one small SQLite table of the server's own.

A row per task that started a mission: the task and context ids, the project, the mission id
and the id of the last store event the task has reported (its cursor, so a task that paused
for input picks up exactly where it stopped). The file lives next to the project registry
(``$XDG_DATA_HOME/mission-control/a2a-tasks.sqlite``).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from engine.registry import default_registry_path

SCHEMA = """CREATE TABLE IF NOT EXISTS a2a_tasks (
    task_id TEXT PRIMARY KEY,
    context_id TEXT NOT NULL,
    project TEXT NOT NULL,
    mission_id INTEGER NOT NULL,
    cursor INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL
)"""


def data_dir() -> Path:
    """The folder of the project registry: ``$XDG_DATA_HOME/mission-control`` (default
    ``~/.local/share/mission-control``), or that of ``$MC_REGISTRY`` when set."""
    return default_registry_path().parent


@dataclass(frozen=True)
class TaskLink:
    task_id: str
    context_id: str
    project: str
    mission_id: int
    cursor: int


class TaskMap:
    """Thread-safe access to the ``a2a_tasks`` table."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or data_dir() / "a2a-tasks.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(self.path), isolation_level=None,
                                     check_same_thread=False, timeout=30)
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute(SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._conn.close()

    def link(self, task_id: str, context_id: str, project: str, mission_id: int,
             cursor: int) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO a2a_tasks VALUES (?, ?, ?, ?, ?, ?)",
                (task_id, context_id, project, mission_id, cursor, time.time()))

    def get(self, task_id: str) -> TaskLink | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT task_id, context_id, project, mission_id, cursor FROM a2a_tasks "
                "WHERE task_id = ?", (task_id,)).fetchone()
        return TaskLink(*row) if row else None

    def advance(self, task_id: str, cursor: int) -> None:
        with self._lock:
            self._conn.execute("UPDATE a2a_tasks SET cursor = ? WHERE task_id = ?",
                               (cursor, task_id))
