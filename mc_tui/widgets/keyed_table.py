"""A DataTable updated by row key: cells change in place, rows are added/removed by key.

It never clears and refills on updates; a filter hides rows by removing them by key
and brings them back by adding them again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.text import Text
from textual.widgets import DataTable


def plain(cell: Any) -> str:
    return cell.plain if isinstance(cell, Text) else str(cell)


class KeyedTable(DataTable[Any]):
    """DataTable with ``upsert(key, cells)`` and a text filter."""

    COLUMNS: Sequence[tuple[str, str, int]] = ()  # (column key, label, width)

    def __init__(self, **kwargs: Any) -> None:
        # no cell padding: each column is one wider than its content instead (one space
        # between columns, not two), so narrow panes show more columns
        super().__init__(cursor_type="row", zebra_stripes=False, cell_padding=0, **kwargs)
        self._cells: dict[str, tuple[Any, ...]] = {}
        self._order: list[str] = []
        self.filter_text = ""
        self.palette: dict[str, str] = {}  # status colours of the theme (set by the screen)

    def on_mount(self) -> None:
        for key, label, width in self.COLUMNS:
            self.add_column(label, key=key, width=width + 1)

    # ------------------------------------------------------------------ keyed updates
    def upsert(self, key: str, cells: Sequence[Any]) -> bool:
        """Insert or update one row by key; returns True if anything visible changed."""
        new = tuple(cells)
        old = self._cells.get(key)
        if old == new:
            return False
        self._cells[key] = new
        if old is None:
            self._order.append(key)
        shown = key in self.rows
        if not self._matches(new):
            if shown:
                self.remove_row(key)
            return shown
        if not shown:
            self.add_row(*new, key=key)
            return True
        for (col_key, _, _), before, after in zip(self.COLUMNS, old or (), new, strict=False):
            if before != after:
                # fixed widths: a changed cell repaints its row, never the layout
                self.update_cell(key, col_key, after)
        return True

    def drop(self, key: str) -> None:
        self._cells.pop(key, None)
        if key in self._order:
            self._order.remove(key)
        if key in self.rows:
            self.remove_row(key)

    def reset(self) -> None:
        """Forget every row (only when the followed mission changes)."""
        self._cells.clear()
        self._order.clear()
        self.clear()

    def keys(self) -> list[str]:
        return list(self._order)

    def selected_key(self) -> str | None:
        if not self.row_count:
            return None
        try:
            return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except Exception:
            return None

    # ------------------------------------------------------------------ filter
    def _matches(self, cells: tuple[Any, ...]) -> bool:
        if not self.filter_text:
            return True
        needle = self.filter_text.lower()
        return any(needle in plain(c).lower() for c in cells)

    def set_filter(self, text: str) -> None:
        """Show only rows containing ``text`` (case-insensitive) in any cell."""
        self.filter_text = text.strip()
        for key in self._order:
            cells = self._cells[key]
            shown = key in self.rows
            if self._matches(cells):
                if not shown:
                    self.add_row(*cells, key=key)
            elif shown:
                self.remove_row(key)
