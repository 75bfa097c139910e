"""Merge queue pane: queued, merging, verifying (with elapsed), promoted, failed with reason,
and fixup candidates with their scores."""

from __future__ import annotations

from typing import Any

from rich.text import Text

from mc_tui.widgets.fmt import clip, duration, status_text
from mc_tui.widgets.keyed_table import KeyedTable
from mc_tui.widgets.mission_state import Changes, MissionState

ACTIVE = ("merging", "verifying")


class MergeQueueTable(KeyedTable):
    COLUMNS = (
        ("id", "#", 4), ("unit", "unit", 8), ("state", "state", 12), ("elapsed", "elapsed", 7),
        ("detail", "detail", 48),
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.palette: dict[str, str] = {}

    def refresh_from(self, state: MissionState, changes: Changes, now: float) -> None:
        if changes.reloaded:
            self.reset()
        merges = state.merges
        touched = set(changes.rows["merges"])
        if changes.rows["verifications"] or changes.reloaded:
            touched = set(merges)
        touched |= {m for m, row in merges.items() if row["status"] in ACTIVE}
        for merge_id in sorted(touched):
            row = merges.get(merge_id)
            if row is not None:
                self.upsert(f"m{merge_id}", self.merge_cells(row, state, now))
        if changes.fixups or changes.reloaded:
            for (unit, cand), fix in state.fixups.items():
                self.upsert(f"f{unit}/{cand}", self.fixup_cells(fix))

    def merge_cells(self, m: dict[str, Any], state: MissionState, now: float) -> tuple[Any, ...]:
        status = m["status"]
        elapsed = "-"
        detail = m.get("reason") or ""
        verification = state.verification_for(m)
        if status in ACTIVE:
            since = m.get("updated_at") or m["created_at"]
            if status == "verifying" and verification and verification["status"] == "running":
                since = verification["started_at"]
            elapsed = duration(now - since)
        if status == "conflict" and m.get("conflict_paths"):
            detail = "conflict: " + ", ".join(m["conflict_paths"])
        elif verification and not detail and verification["status"] != "running":
            detail = f"verify {verification['status']} in {duration(verification.get('duration_s'))}"
        elif status in ACTIVE or status == "queued":
            detail = m["branch"] + (f" (batch {m['batch_id']})" if m.get("batch_id") else "")
        return (
            str(m["id"]), m.get("unit_id") or "-", status_text(status, self.palette), elapsed,
            clip(detail, 48),
        )

    def fixup_cells(self, fix: dict[str, Any]) -> tuple[Any, ...]:
        score = fix.get("score")
        scored = f"score {score:.2f}  " if isinstance(score, int | float) else ""
        return (
            Text(f"fix{fix['candidate']}", style="italic"), fix["unit"],
            status_text(fix["state"], self.palette), "-", clip(scored + fix.get("approach", ""), 48),
        )
