"""The human-in-the-loop modal: gate, unit, diff stat and diff; ``y`` approves, ``n``/esc deny.

The countdown is display only: the engine enforces the timeout (status "expired" = deny).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Static

from mc_tui.bindings import bindings
from mc_tui.widgets.approvals import time_left
from mc_tui.widgets.fmt import diff_syntax, duration
from mc_tui.widgets.git_diff import unit_diff


def approval_diff(approval: dict[str, Any], unit: dict[str, Any] | None, repo: Path) -> tuple[str, str]:
    """(diffstat, diff) from the approval row, else computed from the unit's commits."""
    stat, diff = approval.get("diffstat") or "", approval.get("diff") or ""
    if (not stat or not diff) and unit and unit.get("base_commit") and unit.get("head_commit"):
        computed = unit_diff(repo, unit["base_commit"], unit["head_commit"])
        if computed.error:
            return stat or computed.error, diff
        return stat or computed.stat, diff or computed.patch
    return stat, diff


class ApprovalModal(ModalScreen[bool]):
    """Result: True = approve, False = deny. Dismissed with no decision if decided elsewhere.

    A key posts :class:`Decided` to the app, which records it in the store and then
    dismisses the modal with the answer (so the row is never seen pending after it closes).
    """

    BINDINGS = bindings("approval")

    class Decided(Message):
        """The user decided ``approval_id``: ``approved`` True (y) or False (n, esc)."""

        def __init__(self, approval_id: int, approved: bool) -> None:
            super().__init__()
            self.approval_id = approval_id
            self.approved = approved

    def __init__(
        self, approval: dict[str, Any], unit: dict[str, Any] | None, *, repo_path: Path,
        now: float, dark: bool = True,
    ) -> None:
        super().__init__(id="approval-modal")
        self.approval = approval
        self.approval_id: int = approval["id"]
        self.unit = unit
        self._repo_path = repo_path
        self._now = now
        self._dark = dark
        self._countdown: Static | None = None
        self.decided = False  # the user answered; the modal is closing

    def compose(self) -> ComposeResult:
        a = self.approval
        stat, diff = approval_diff(a, self.unit, self._repo_path)
        with Vertical(id="approval-dialog"):
            yield Static(Text.assemble(("Approval needed", "bold"), f"  #{a['id']}  gate: ",
                                       (a["gate"], "bold")), id="approval-head")
            yield Static(Text(a["title"]), id="approval-title")
            unit_line = "unit: -"
            if a.get("unit_id"):
                title = self.unit["title"] if self.unit else ""
                unit_line = f"unit: {a['unit_id']} {title}".rstrip()
            yield Static(unit_line, id="approval-unit")
            yield Static(Text(stat or "(no diff stat)"), id="approval-stat")
            with VerticalScroll(id="approval-diff"):
                if diff and a["gate"] == "plan":  # the plan tree, not a patch
                    yield Static(Text(diff), id="approval-plan")
                elif diff:
                    yield Static(diff_syntax(diff, dark=self._dark))
                else:
                    yield Static(Text("(no diff attached)", style="dim"))
            self._countdown = Static(self._countdown_text(self._now), id="countdown")
            yield self._countdown
            yield Static(Text.assemble(("y", "bold"), " approve   ", ("n", "bold"), " / ",
                                       ("esc", "bold"), " deny (the safe default)"), id="approval-keys")

    def _countdown_text(self, now: float) -> Text:
        left = time_left(self.approval, now)
        if left is None:
            return Text("no timeout: waiting for a decision")
        if left <= 0:
            return Text("time is up: the engine denies it (safe default)", style="bold")
        return Text.assemble(("time left ", "dim"), (duration(left), "bold"),
                             (" before the safe default (deny)", "dim"))

    def update_countdown(self, now: float) -> None:
        self._now = now
        if self._countdown is not None:
            self._countdown.update(self._countdown_text(now), layout=False)

    def action_decide(self, approved: bool) -> None:
        if self.decided:
            return  # a second key while closing
        self.decided = True
        self.app.post_message(self.Decided(self.approval_id, approved))

