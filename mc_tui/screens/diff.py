"""Full details and diff of one unit (``d``)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Group
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from mc_tui.widgets.fmt import diff_syntax
from mc_tui.widgets.git_diff import unit_diff
from mc_tui.widgets.mission_state import MissionState
from mc_tui.widgets.unit_details import render_unit


class DiffScreen(ModalScreen[None]):
    """The unit's details and its whole diff (base_commit..head_commit) in a scroll view."""

    BINDINGS = [
        Binding("escape", "dismiss", "Close", id="diff_close"),
        Binding("q", "dismiss", "Close", show=False, id="diff_close_q"),
    ]

    def __init__(self, state: MissionState, unit_id: str, *, repo_path: Path,
                 palette: dict[str, str], dark: bool) -> None:
        super().__init__(id="diff-screen")
        self.unit_id = unit_id
        self._state = state
        self._repo_path = repo_path
        self._palette = palette
        self._dark = dark

    def compose(self) -> ComposeResult:
        unit = self._state.units.get(self.unit_id) or {}
        details = render_unit(self._state, self.unit_id, self._repo_path, self._palette, dark=self._dark)
        # render_unit shows a preview; here the whole patch follows the details
        body: list = [details]
        if unit.get("base_commit") and unit.get("head_commit"):
            diff = unit_diff(self._repo_path, unit["base_commit"], unit["head_commit"])
            if not diff.error and diff.patch.count("\n") > 120:
                body += [Text("\nWhole diff", style="bold"),
                         diff_syntax(diff.patch, dark=self._dark)]
        with Vertical(id="diff-dialog"):
            yield Static(Text.assemble(("Unit ", "bold"), (self.unit_id, "bold"), "   esc closes"),
                         id="diff-head")
            with VerticalScroll(id="diff-body"):
                yield Static(Group(*body))

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(None)

