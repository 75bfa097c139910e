"""Workers pane: one row per worker slot (unit, state, elapsed, turns, cost, host, backend,
model)."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.message import Message

from mc_tui.widgets.fmt import clip, duration, status_text, usd
from mc_tui.widgets.keyed_table import KeyedTable
from mc_tui.widgets.mission_state import Changes, MissionState

SILENCE_SHOWN_S = 30.0  # a running session silent this long shows "quiet m:ss" as its state


class WorkersTable(KeyedTable):
    # most telling first: narrow panes crop the right-most columns
    # the unit's title is in the plan tree; backend and model share a column
    COLUMNS = (
        ("slot", "#", 2), ("unit", "unit", 10), ("state", "state", 11), ("elapsed", "time", 5),
        ("turns", "turns", 5), ("cost", "cost", 6), ("agent", "backend/model", 16),
    )

    class SlotHighlighted(Message):
        def __init__(self, slot: int | None) -> None:
            super().__init__()
            self.slot = slot

    def refresh_from(self, state: MissionState, changes: Changes, now: float) -> None:
        if changes.reloaded:
            self.reset()
        for slot in sorted(state.slot_attempt):
            attempt = state.attempts.get(state.slot_attempt[slot])
            if attempt is not None:
                self.upsert(f"slot-{slot}", self.cells(slot, attempt, state, now))

    def cells(self, slot: int, a: dict[str, Any], state: MissionState, now: float) -> tuple[Any, ...]:
        running = a["status"] == "running"
        elapsed = (now if running else (a.get("ended_at") or now)) - a["started_at"]
        status = status_text(a["status"], self.palette)
        if not running:
            status.stylize("dim")  # the slot is idle; this was its last session
        else:
            silent = now - state.last_output.get(a["id"], a["started_at"])
            if silent >= SILENCE_SHOWN_S:  # growing until [agent] stall_seconds ends it
                status = Text(f"quiet {duration(silent)}", style="bold yellow")
        return (
            str(slot), clip(a.get("unit_id") or a["role"], 10), status, duration(elapsed),
            str(a.get("turns") or 0), usd(a.get("cost_usd")), clip(host_label(a), 16),
        )

    def selected_slot(self) -> int | None:
        key = self.selected_key()
        return int(key.split("-", 1)[1]) if key else None

    def on_data_table_row_highlighted(self, event: KeyedTable.RowHighlighted) -> None:
        self.post_message(self.SlotHighlighted(self.selected_slot()))


def host_label(a: dict[str, Any]) -> str:
    """``host: backend/model`` for a session on a configured host ([[hosts]]), else the label."""
    host = a.get("host")
    return f"{host}: {agent_label(a)}" if host else agent_label(a)


def agent_label(a: dict[str, Any]) -> str:
    """``backend/model`` without the repeated prefix (``scripted/sonnet``, ``claude/opus-4``)."""
    backend, model = a.get("backend") or "-", a.get("model") or "-"
    for prefix in (backend + "-", "claude-"):
        if model.startswith(prefix) and len(model) > len(prefix):
            model = model[len(prefix):]
            break
    return f"{backend}/{model}"
