"""Approvals pane: pending (with time left) and decided human-in-the-loop requests."""

from __future__ import annotations

from typing import Any

from mc_tui.widgets.fmt import clip, duration, status_text
from mc_tui.widgets.keyed_table import KeyedTable
from mc_tui.widgets.mission_state import Changes, MissionState


def time_left(approval: dict[str, Any], now: float) -> float | None:
    expires = approval.get("expires_at")
    return None if expires is None else max(0.0, expires - now)


class ApprovalsTable(KeyedTable):
    COLUMNS = (
        ("id", "#", 3), ("status", "status", 11), ("when", "left / by", 10), ("gate", "gate", 11),
        ("title", "title", 40), ("unit", "unit", 8),
    )

    def refresh_from(self, state: MissionState, changes: Changes, now: float) -> None:
        if changes.reloaded:
            self.reset()
        touched = set(changes.rows["approvals"]) | {a["id"] for a in state.pending_approvals()}
        for approval_id in sorted(touched):
            row = state.approvals.get(approval_id)
            if row is not None:
                self.upsert(f"a{approval_id}", self.cells(row, now))

    def cells(self, a: dict[str, Any], now: float) -> tuple[Any, ...]:
        if a["status"] == "pending":
            left = time_left(a, now)
            when = "no timeout" if left is None else f"{duration(left)} left"
        else:
            when = a.get("decided_by") or ("timeout" if a["status"] == "expired" else "-")
        return (
            str(a["id"]), status_text(a["status"], self.palette), when, a["gate"],
            clip(a["title"], 40), a.get("unit_id") or "-",
        )

    def selected_approval(self) -> int | None:
        key = self.selected_key()
        return int(key[1:]) if key else None
