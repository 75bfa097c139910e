"""An example Mission Control plugin (see docs/plugins.md).

- an **observer** that appends every event of the mission to a JSONL file, one object a
  line (``id``, ``ts``, ``kind``, ``mission_id``, ``unit_id``, ``payload``). On resume it
  starts after the last id already in the file, so the log has every event once;
- a **hook** that orders ready units smallest first (fewest ``files_hint`` entries, then
  the planner's priority), so quick wins land early.

Config (``mission-control.toml``)::

    [plugins.audit]
    path = "audit.jsonl"      # relative to the state dir (default: <state dir>/audit.jsonl)
    order = "fewest_files"    # or "as_planned" to leave the order alone
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from engine.models import Event
from engine.plugins import ObserverContext, Plugin, PluginConfig


class AuditConfig(PluginConfig):
    path: Path = Path("audit.jsonl")
    order: Literal["fewest_files", "as_planned"] = "fewest_files"


class JsonlAudit:
    """Observer: one JSON line per event, appended and flushed as it comes."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def start_after(self, ctx: ObserverContext) -> int:
        """The last event id already logged for this mission (0: from its first event)."""
        last = 0
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    row = json.loads(line)
                except ValueError:
                    continue  # a line cut short by a crash
                if row.get("mission_id") == ctx.mission_id:
                    last = max(last, int(row["id"]))
        return last

    def on_event(self, event: Event, ctx: ObserverContext) -> None:  # runs in a thread
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as handle:
            handle.write(event.model_dump_json() + "\n")


class AuditPlugin(Plugin):
    name = "audit"
    Config = AuditConfig

    def _path(self) -> Path:
        path = self.config.path  # type: ignore[attr-defined]
        return path if path.is_absolute() else self.mission.state_dir() / path

    def observers(self) -> list[JsonlAudit]:
        return [JsonlAudit(self._path())]

    def order_ready(self, units: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if self.config.order == "as_planned":  # type: ignore[attr-defined]
            return units
        return sorted(units, key=lambda u: (len(u["files_hint"] or []), u["priority"]))
