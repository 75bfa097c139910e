"""The bottom key hints. Static text, rebuilt only when the keymap changes.

Textual's Footer recomposes on every focus change, which costs more than the whole
dashboard update under load; these hints are the same on every pane anyway.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual.widgets import Static

# (binding id, label) in display order; the key comes from the live keymap.
# Narrow terminals get tighter spacing, then lose hints from the end; `?` lists them all.
HINTS: tuple[tuple[str, str], ...] = (
    ("focus_plan", "panes"), ("help", "keys"), ("quit", "quit"), ("pause", "pause"),
    ("stop", "stop"), ("approvals", "approvals"), ("filter", "filter"), ("diff", "diff"),
    ("zoom", "zoom"),
)
PALETTE = ("^p", "palette")


class KeyBar(Static):
    def __init__(self, key_for: Callable[[str], str], **kwargs: Any) -> None:
        super().__init__("", **kwargs)
        self._key_for = key_for

    def on_mount(self) -> None:
        self.rebuild()

    def on_resize(self) -> None:
        self.rebuild()

    def hints(self) -> list[tuple[str, str]]:
        """(key, label) pairs from the live keymap, palette last."""
        pairs = []
        for binding_id, label in HINTS:
            key = self._key_for(binding_id)
            if binding_id == "focus_plan":
                key = "1-6" if key == "1" else f"{key}…"
            pairs.append((key, label))
        return [*pairs, PALETTE]

    def rebuild(self) -> None:
        self.update(fit_hints(self.hints(), self.size.width or 10_000), layout=False)


def fit_hints(pairs: list[tuple[str, str]], width: int) -> Text:
    """The full hints if they fit; else tighter; else without hints before the last one
    (the palette), while `? keys` stays so the rest can still be found."""
    for gap in (2, 1):
        text = _assemble(pairs, gap)
        if text.cell_len <= width:
            return text
    shown = list(pairs)
    while len(shown) > 3:
        shown.pop(-2)
        text = _assemble(shown, 1)
        if text.cell_len <= width:
            return text
    return _assemble(shown, 1)


def _assemble(pairs: list[tuple[str, str]], gap: int) -> Text:
    parts: list[Any] = []
    for i, (key, label) in enumerate(pairs):
        last = i == len(pairs) - 1
        parts += [(f" {key}", "bold"), f" {label}" + ("" if last else " " * (gap - 1))]
    return Text.assemble(*parts, no_wrap=True, overflow="ellipsis")
