"""Status bar: target, objective, epoch, spend/budget, wall time and mission state."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Static

from engine.resilience.liveness import LOST, is_lost, resume_command
from mc_tui.widgets.fmt import clip, duration, status_text, usd
from mc_tui.widgets.mission_state import MissionState


class StatusBar(Static):
    """One line, rebuilt on the clock only when its text changes."""

    def __init__(self, *, target: str, budget: float, bypass: bool = False, **kwargs: Any) -> None:
        super().__init__("", **kwargs)
        self.target = target
        self.bypass = bypass  # [agent] permission_mode = "bypassPermissions": said on every frame
        self.budget = budget
        self.palette: dict[str, str] = {}
        self._last: Text | None = None

    def render_status(self, state: MissionState, now: float, *, note: str = "") -> Text:
        m = state.mission
        if m is None:
            return Text.assemble((f" {self.target} ", "bold reverse"), *self._bypass_label(),
                                 "  waiting for a mission…",
                                 (f"  {note}" if note else "", "italic"))
        epoch = state.current_epoch()
        end = m.get("ended_at") or now
        spent = m.get("total_cost_usd") or 0.0
        over = spent > self.budget
        # most important first: the objective takes what width is left
        parts: list[Any] = [
            (f" {self.target} ", "bold reverse"), *self._bypass_label(), " ",
            *self._status(m, now), "  ",
            ("epoch ", "dim"), str(epoch["number"]) if epoch else "-", "  ",
            ("spend ", "dim"), (f"{usd(spent)}/{usd(self.budget)}", "bold red" if over else ""), "  ",
            ("wall ", "dim"), duration(end - m["started_at"]), "  ",
        ]
        if m["status"] == "not_pushed":  # the objective is met, the push is what is missing
            why = str(m.get("outcome") or "").removeprefix("objective met, ")
            parts += [(clip(why, 100), "bold"), "  "]
        tripped = [b for b in getattr(state, "breakers", []) if b["state"] != "closed"]
        if tripped:  # degraded: the breakers that are open or probing
            parts += [("breaker ", "dim"), (", ".join(
                f"{b['component']} {b['state'].replace('_', '-')}" for b in tripped), "bold yellow"), "  "]
        if is_lost(m, now):  # its engine stopped without closing the mission
            parts += [(f"no heartbeat: resume with `{resume_command()}`", "bold red"), "  "]
        if note:
            parts += [(note, "italic"), "  "]
        parts += [(f"#{m['id']} ", "dim"), clip(m.get("objective"), 100)]
        return Text.assemble(*parts, no_wrap=True, overflow="ellipsis")

    def _status(self, m: dict[str, Any], now: float) -> tuple[Any, ...]:
        if is_lost(m, now):  # ("lost" is also a fixup candidate's state: styled here)
            return ((f"? {LOST}", "bold red"),)
        return (status_text(m["status"], self.palette),)

    def _bypass_label(self) -> tuple[Any, ...]:
        return (" ", (" NO PERMISSION CHECKS ", "bold white on red")) if self.bypass else ()

    def show_loading(self) -> None:
        self._last = Text.assemble((f" {self.target} ", "bold reverse"), ("  reading the mission…", "dim"))
        self.update(self._last, layout=False)

    def refresh_from(self, state: MissionState, now: float, *, note: str = "") -> None:
        text = self.render_status(state, now, note=note)
        if text != self._last:
            self._last = text
            self.update(text, layout=False)  # one line, fixed size
