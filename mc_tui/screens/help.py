"""``?``: every key binding with its id (remap ids in ``[ui] keys`` of the config)."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape", "close", "Close", id="help_close"),
        Binding("question_mark", "close", "Close", show=False, id="help_close_key"),
        Binding("q", "close", "Close", show=False, id="help_close_q"),
    ]

    def __init__(self, rows: list[tuple[str, str, str]]) -> None:
        """``rows``: (key, description, binding id)."""
        super().__init__(id="help-screen")
        self.rows = rows

    def compose(self) -> ComposeResult:
        table = Table(title="Keys", title_justify="left", expand=True, box=None)
        table.add_column("key", style="bold", no_wrap=True)
        table.add_column("does")
        table.add_column("binding id (ui.keys)", style="dim", no_wrap=True)
        for key, description, binding_id in self.rows:
            table.add_row(key, description, binding_id)
        with Vertical(id="help-dialog"):
            with VerticalScroll():
                yield Static(table)
            yield Static("ctrl+p opens the command palette · esc closes", id="help-foot")

    def action_close(self) -> None:
        self.dismiss(None)
