"""Workers pane: one row per worker slot (unit, backend, model, elapsed, turns, cost, state)."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.message import Message

from mc_tui.widgets.fmt import clip, duration, status_text, usd
from mc_tui.widgets.keyed_table import KeyedTable
from mc_tui.widgets.mission_state import Changes, MissionState


class WorkersTable(KeyedTable):
    # most telling first: narrow panes crop the right-most columns
    COLUMNS = (
        ("slot", "slot", 4), ("unit", "unit", 24), ("state", "state", 19), ("elapsed", "elapsed", 7),
        ("turns", "turns", 5), ("cost", "cost", 7), ("model", "model", 8), ("backend", "backend", 8),
    )

    class SlotHighlighted(Message):
        def __init__(self, slot: int | None) -> None:
            super().__init__()
            self.slot = slot

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.palette: dict[str, str] = {}

    def refresh_from(self, state: MissionState, changes: Changes, now: float) -> None:
        if changes.reloaded:
            self.reset()
        for slot in sorted(state.slot_attempt):
            attempt = state.attempts.get(state.slot_attempt[slot])
            if attempt is not None:
                self.upsert(f"slot-{slot}", self.cells(slot, attempt, state, now))

    def cells(self, slot: int, a: dict[str, Any], state: MissionState, now: float) -> tuple[Any, ...]:
        unit = state.units.get(a.get("unit_id") or "")
        unit_label = f"{a.get('unit_id') or '-'} {unit['title']}" if unit else (a.get("unit_id") or a["role"])
        running = a["status"] == "running"
        elapsed = (now if running else (a.get("ended_at") or now)) - a["started_at"]
        state_cell = status_text(a["status"], self.palette) if running else Text.assemble(
            status_text(a["status"], self.palette), (" (idle)", "dim"))
        return (
            str(slot), clip(unit_label, 24), state_cell, duration(elapsed),
            str(a.get("turns") or 0), usd(a.get("cost_usd")), a.get("model") or "-", a["backend"],
        )

    def selected_slot(self) -> int | None:
        key = self.selected_key()
        return int(key.split("-", 1)[1]) if key else None

    def on_data_table_row_highlighted(self, event: KeyedTable.RowHighlighted) -> None:
        self.post_message(self.SlotHighlighted(self.selected_slot()))
