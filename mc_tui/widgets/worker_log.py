"""Live log of the selected worker's agent events (bounded, written once per UI tick)."""

from __future__ import annotations

from typing import Any

from mc_tui.widgets.mission_state import AGENT_LOG_MAX, Changes, MissionState
from mc_tui.widgets.throttled_log import ThrottledLog


class WorkerLog(ThrottledLog):
    """Agent events of one slot: text, tool calls, folded tool results."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_lines=AGENT_LOG_MAX, **kwargs)
        self.slot: int | None = None
        self.filter_text = ""
        self._state: MissionState | None = None

    def _keep(self, line: str) -> bool:
        return not self.filter_text or self.filter_text.lower() in line.lower()

    def show_slot(self, state: MissionState, slot: int | None) -> None:
        self._state = state
        self.slot = slot
        if slot is None:
            self.reset_lines(())
            return
        self.reset_lines(ln for ln in state.agent_log.get(slot, ()) if self._keep(ln))

    def refresh_from(self, state: MissionState, changes: Changes, *, flush: bool = False) -> None:
        self._state = state
        if changes.reloaded:
            self.show_slot(state, self.slot)
            return
        if self.slot is None:
            return
        self.queue_lines(ln for ln in changes.agent_lines.get(self.slot, ()) if self._keep(ln))
        self.flush(force=flush)

    def set_filter(self, text: str) -> None:
        self.filter_text = text.strip()
        if self._state is not None:
            self.show_slot(self._state, self.slot)
