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
    # state carries the elapsed time, so unit + state + the start of the detail fit a
    # 36-column pane; `z` zooms the pane for whole details
    COLUMNS = (("unit", "unit", 10), ("state", "state", 16), ("detail", "detail", 72))

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
            for (unit, rnd, cand), fix in state.fixups.items():
                self.upsert(f"f{unit}/{rnd}/{cand}", self.fixup_cells(fix))

    def merge_cells(self, m: dict[str, Any], state: MissionState, now: float) -> tuple[Any, ...]:
        status = m["status"]
        detail = m.get("reason") or ""
        verification = state.verification_for(m)
        state_cell = status_text(status, self.palette)
        if status in ACTIVE:
            since = m.get("updated_at") or m["created_at"]
            if status == "verifying" and verification and verification["status"] == "running":
                since = verification["started_at"]
            state_cell.append(f" {duration(now - since)}")
        if status == "conflict" and m.get("conflict_paths"):
            detail = "conflict: " + ", ".join(m["conflict_paths"])
        elif verification and not detail and verification["status"] != "running":
            detail = f"verify {verification['status']} in {duration(verification.get('duration_s'))}"
        elif status in ACTIVE or status == "queued":
            detail = f"batch {m['batch_id']}" if m.get("batch_id") else m["branch"]
        return (m.get("unit_id") or "-", state_cell, clip(_one_line(detail), 72))

    def fixup_cells(self, fix: dict[str, Any]) -> tuple[Any, ...]:
        label = f"↳ fixup {fix['candidate']}"
        if fix.get("round", 1) > 1:
            label += f" r{fix['round']}"
        return (
            Text(label, style="italic"), status_text(fix["state"], self.palette),
            clip(f"{fix['unit']}: {fixup_score(fix)}" + (f" · {fix['approach']}" if fix.get("approach") else ""), 72),
        )


def fixup_score(fix: dict[str, Any]) -> str:
    """What the winner is chosen by: tests passing, then lint errors, then diff size."""
    if fix.get("tests_passed") is None and fix.get("score") is None:
        return "running"
    if fix.get("tests_passed") is None:
        return f"score {fix['score']:.2f}"
    passed, failed = fix["tests_passed"], fix.get("tests_failed") or 0
    return (f"tests {passed}/{passed + failed}  lint {fix.get('lint_errors', 0)}  "
            f"diff {fix.get('diff_lines', '?')} lines")


def _one_line(text: str) -> str:
    """The telling line of a multi-line reason (e.g. the FAIL line of a test run)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and set(ln.strip()) - set("=-.F")]
    if len(lines) <= 1:
        return text.strip()
    telling = next((ln for ln in lines if ln.startswith(("FAIL", "ERROR", "AssertionError", "E "))), None)
    return f"{lines[0]} {telling}" if telling and telling != lines[0] else lines[0]
