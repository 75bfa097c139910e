"""Details of the selected unit: description, acceptance criteria, attempts, review, diff."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from mc_tui.widgets.fmt import clip, diff_syntax, duration, status_text, usd
from mc_tui.widgets.git_diff import unit_diff
from mc_tui.widgets.mission_state import Changes, MissionState

DIFF_PREVIEW_LINES = 120


def render_unit(
    state: MissionState, unit_id: str, repo_path: Path, palette: dict[str, str], *, dark: bool
) -> RenderableType:
    """Everything the store knows about one unit, plus its diff preview."""
    unit = state.units.get(unit_id)
    if unit is None:
        return Text(f"unit {unit_id} is not in this mission", style="dim")
    head = Table.grid(padding=(0, 1))
    head.add_column(style="bold", no_wrap=True)
    head.add_column()
    head.add_row("unit", Text(f"{unit_id}  {unit['title']}"))
    head.add_row("status", Text.assemble(status_text(unit["status"], palette),
                                         f"  {unit.get('reason') or ''}"))
    head.add_row("specialist", f"{unit.get('specialist', 'general')}  priority {unit.get('priority', 3)}")
    if unit.get("branch"):
        head.add_row("branch", unit["branch"])
    head.add_row("cost", usd(unit.get("cost_usd")))
    if unit.get("review_score") is not None:
        head.add_row("review", f"{unit['review_score']:.1f}/10  {clip(unit.get('review_feedback'), 200)}")
    parts: list[RenderableType] = [head]
    if unit.get("description"):
        parts += [Text(""), Text(unit["description"])]
    criteria = unit.get("acceptance_criteria") or []
    if criteria:
        parts.append(Text("\nAcceptance criteria", style="bold"))
        parts += [Text(f"  • {c}") for c in criteria]
    if unit.get("files_hint"):
        parts.append(Text("files: " + ", ".join(unit["files_hint"]), style="dim"))
    context = state.unit_context(unit_id)
    if context:  # what its workers reported for later units (docs/learning.md)
        parts.append(Text("\nReported for later units", style="bold"))
        for item in context:
            scope = f" ({', '.join(item.get('paths') or [])})" if item.get("paths") else ""
            parts.append(Text(f"  {item.get('kind')}{scope}: {clip(item.get('text'), 300)}"))
    attempts = state.unit_attempts(unit_id)
    if attempts:
        table = Table(title="Attempts", title_justify="left", expand=True, box=None, padding=(0, 1))
        for col in ("#", "role", "backend", "model", "status", "turns", "cost", "time"):
            table.add_column(col, no_wrap=True)
        reasons: list[Text] = []  # below the table, wrapped: a column would crush the others
        for a in attempts:
            elapsed = (a.get("ended_at") or a["started_at"]) - a["started_at"]
            table.add_row(
                str(a["id"]), a["role"], a["backend"], a.get("model") or "-",
                status_text(a["status"], palette), str(a.get("turns") or 0),
                usd(a.get("cost_usd")), duration(elapsed) if a.get("ended_at") else "…",
            )
            why = ": ".join(str(x) for x in (a.get("failure_reason"), a.get("error")) if x)
            if why:  # e.g. "denied: agent was denied: Write /x/.git/a.py, Bash(git commit ...)"
                reasons.append(Text(f"#{a['id']} {clip(why, 300)}", style="dim"))
        parts += [Text(""), table, *reasons]
    if unit.get("base_commit") and unit.get("head_commit"):
        diff = unit_diff(repo_path, unit["base_commit"], unit["head_commit"])
        parts.append(Text(f"\nDiff {unit['base_commit'][:8]}..{unit['head_commit'][:8]}", style="bold"))
        if diff.error:
            parts.append(Text(diff.error, style="italic"))
        else:
            parts.append(Text(diff.stat))
            lines = diff.patch.splitlines()
            preview = "\n".join(lines[:DIFF_PREVIEW_LINES])
            if len(lines) > DIFF_PREVIEW_LINES:
                preview += f"\n... {len(lines) - DIFF_PREVIEW_LINES} more lines (press d)"
            parts.append(diff_syntax(preview, dark=dark))
    return Group(*parts)


class UnitDetails(VerticalScroll):
    """Scrollable details of the unit selected in the plan tree."""

    def __init__(self, repo_path: Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.repo_path = repo_path
        self.unit_id: str | None = None
        self.palette: dict[str, str] = {}
        self._body = Static(Text("select a unit", style="dim"), id="unit-details-body")

    def compose(self) -> ComposeResult:
        yield self._body

    def show(self, state: MissionState, unit_id: str | None) -> None:
        self.unit_id = unit_id
        if unit_id is None:
            self._body.update(Text("select a unit to see its details", style="dim"))
            return
        self._body.update(render_unit(state, unit_id, self.repo_path, self.palette,
                                      dark=self.app.current_theme.dark))

    def refresh_from(self, state: MissionState, changes: Changes) -> None:
        if self.unit_id is None:
            return
        attempts = changes.rows["attempts"]
        touched = (
            changes.reloaded or self.unit_id in changes.rows["units"]
            or any(state.attempts.get(a, {}).get("unit_id") == self.unit_id for a in attempts)
        )
        if touched:
            self.show(state, self.unit_id)

