"""The one binding registry: binding id -> default key, action and where it applies.

Every remappable key of the dashboard is declared here, once. The screens and widgets take
their ``BINDINGS`` from it (:func:`bindings`), ``[ui] keys`` remaps it by id (:class:`Keymap`),
and the help screen (``?``) and the key bar read their keys from the same :class:`Keymap`.
Dialog-local keys (a yes/no question, closing help or the diff) stay with their screens.

The shape follows harlequin's keymap (a named binding id per action, remapped by id) and
Textual's own ``Binding.id`` + ``App.set_keymap``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Literal, NamedTuple

from textual.binding import Binding

Scope = Literal["app", "main", "cost_graph", "approval"]


class KeySpec(NamedTuple):
    """One binding: ``id`` (what ``[ui] keys`` names), its default ``key``, the Textual
    ``action`` it runs, the ``description`` shown by ``?``, and the ``scope`` it lives in."""

    id: str
    key: str
    action: str
    description: str
    scope: Scope
    show: bool = True


# pane number -> (container id, focus target id, title)
PANES: dict[int, tuple[str, str, str]] = {
    1: ("pane-plan", "plan-tree", "Plan"),
    2: ("pane-workers", "workers", "Workers"),
    3: ("pane-merges", "merge-queue", "Merge queue"),
    4: ("pane-approvals", "approvals", "Approvals"),
    5: ("pane-costs", "cost-graph", "Cost"),
    6: ("pane-events", "event-log", "Events"),
}

# Display order (the help screen lists them in this order).
REGISTRY: tuple[KeySpec, ...] = (
    KeySpec("help", "question_mark", "help", "Keys", "app"),
    KeySpec("quit", "q", "quit", "Quit", "app"),
    *(
        KeySpec(f"focus_{cid[5:]}", str(n), f"app.focus_pane({n})", f"Focus {title.lower()}", "main",
                show=False)
        for n, (cid, _, title) in PANES.items()
    ),
    KeySpec("filter", "slash", "app.filter", "Filter", "main"),
    KeySpec("approvals", "a", "app.jump_approvals", "Approvals", "main"),
    KeySpec("pause", "p", "app.toggle_pause", "Pause/resume", "main"),
    KeySpec("stop", "s", "app.stop", "Stop", "main"),
    KeySpec("diff", "d", "app.diff", "Diff", "main"),
    KeySpec("zoom", "z", "app.zoom", "Zoom pane", "main"),
    KeySpec("cost_split", "m", "toggle_split", "Split model/role", "cost_graph"),
    KeySpec("approve", "y", "decide(True)", "Approve", "approval"),
    KeySpec("deny", "n", "decide(False)", "Deny", "approval"),
    KeySpec("deny_escape", "escape", "decide(False)", "Deny", "approval", show=False),
)

BY_ID: dict[str, KeySpec] = {spec.id: spec for spec in REGISTRY}
PALETTE_KEY = ("ctrl+p", "Command palette (every action)", "command_palette")


def bindings(scope: Scope) -> list[Binding]:
    """The Textual bindings of one scope (a class's ``BINDINGS``)."""
    return [Binding(s.key, s.action, s.description, show=s.show, id=s.id)
            for s in REGISTRY if s.scope == scope]


def all_bindings() -> list[Binding]:
    """Every registered binding, in display order (the ids users may remap)."""
    return [Binding(s.key, s.action, s.description, show=s.show, id=s.id) for s in REGISTRY]


class Keymap:
    """The registry after ``[ui] keys``: valid overrides, warnings for unknown ids.

    ``display`` turns a key into what the user reads (Textual's ``App.get_key_display``).
    """

    def __init__(self, overrides: Mapping[str, str] | None = None, *,
                 display: Callable[[str], str] = lambda key: key) -> None:
        overrides = dict(overrides or {})
        self.overrides = {bid: key for bid, key in overrides.items() if bid in BY_ID}
        self.warnings = [f"ui.keys: unknown binding id '{bad}' (ignored); see ? for the ids"
                         for bad in sorted(set(overrides) - set(BY_ID))]
        self._display = display

    def key(self, binding_id: str) -> str:
        """The key bound to ``binding_id`` (override or default); the id itself if unknown."""
        spec = BY_ID.get(binding_id)
        if spec is None:
            return binding_id
        return self.overrides.get(binding_id, spec.key)

    def key_for(self, binding_id: str) -> str:
        """The key as displayed (``?`` for ``question_mark``); the id itself if unknown."""
        if binding_id not in BY_ID:
            return binding_id
        return self._display(self.key(binding_id))

    def help_rows(self, extra: Iterable[tuple[str, str, str]] = (PALETTE_KEY,)) -> list[tuple[str, str, str]]:
        """(key, description, binding id) for every registered binding, then ``extra``."""
        return [(self.key_for(s.id), s.description, s.id) for s in REGISTRY] + list(extra)
