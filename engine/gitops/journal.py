"""The merge queue's intent journal (table ``queue_journal``).

Before each step the queue writes ``(step, "intent", data)`` and after it
``(step, "done", data)``. Start-up reconciliation reads it next to the git refs.
A hook called after every write lets fault-injection tests stop the process at
an exact point.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from engine.store.db import Store

JournalHook = Callable[[str, str, dict[str, Any]], None]


class Journal:
    def __init__(self, store: Store, mission_id: int | None) -> None:
        self.store = store
        self.mission_id = mission_id
        self.hook: JournalHook | None = None

    def write(self, step: str, phase: str, **data: Any) -> None:
        self.store.insert(
            "queue_journal",
            {"mission_id": self.mission_id, "step": step, "phase": phase,
             "data": json.dumps(data, default=str), "ts": time.time()},
        )
        if self.hook is not None:
            self.hook(step, phase, data)

    def entries(self, step: str | None = None) -> list[dict[str, Any]]:
        where, params = "mission_id IS ?", [self.mission_id]
        if step is not None:
            where += " AND step = ?"
            params.append(step)
        rows = self.store.rows("queue_journal", where, params)
        for row in rows:
            row["data"] = json.loads(row["data"] or "{}")
        return rows

    def open_intents(self, step: str) -> list[dict[str, Any]]:
        """Intents of ``step`` not followed by a ``done`` (the step was interrupted)."""
        open_: list[dict[str, Any]] = []
        for row in self.entries(step):
            if row["phase"] == "intent":
                open_.append(row)
            elif row["phase"] == "done" and open_:
                open_.pop()
        return open_
