"""The bottom key hints. Static text, rebuilt only when the keymap changes.

Textual's Footer recomposes on every focus change, which costs more than the whole
dashboard update under load; these hints are the same on every pane anyway.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual.widgets import Static

# (binding id, label) in display order; the key comes from the live keymap
# (binding id, label) in display order (narrow terminals crop the end; ? lists them all)
HINTS: tuple[tuple[str, str], ...] = (
    ("focus_plan", "panes"), ("help", "keys"), ("quit", "quit"), ("pause", "pause"),
    ("stop", "stop"), ("approvals", "approvals"), ("filter", "filter"), ("diff", "diff"),
    ("zoom", "zoom"),
)


class KeyBar(Static):
    def __init__(self, key_for: Callable[[str], str], **kwargs: Any) -> None:
        super().__init__("", **kwargs)
        self._key_for = key_for

    def on_mount(self) -> None:
        self.rebuild()

    def rebuild(self) -> None:
        parts: list[Any] = []
        for binding_id, label in HINTS:
            key = self._key_for(binding_id)
            if binding_id == "focus_plan":
                key = "1-6" if key == "1" else f"{key}…"
            parts += [(f" {key}", "bold"), f" {label} "]
        parts += [(" ^p", "bold"), " palette"]
        self.update(Text.assemble(*parts, no_wrap=True, overflow="ellipsis"), layout=False)
