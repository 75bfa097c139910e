"""Event log pane: every store event of the mission (except agent chatter), bounded."""

from __future__ import annotations

from typing import Any

from engine.models import Event
from engine.views import event_detail
from mc_tui.widgets.fmt import clip
from mc_tui.widgets.mission_state import EVENT_LOG_MAX, Changes, MissionState
from mc_tui.widgets.throttled_log import ThrottledLog


def format_event(event: Event, start: float | None) -> str:
    """``+mm:ss kind key=value ...`` relative to the mission start (stable across time zones)."""
    rel = event.ts - start if start is not None else 0.0
    sign = "-" if rel < 0 else "+"
    rel = abs(int(rel))
    h, rest = divmod(rel, 3600)
    m, s = divmod(rest, 60)
    stamp = f"{sign}{h}:{m:02d}:{s:02d}" if h else f"{sign}{m:02d}:{s:02d}"
    unit = f" [{event.unit_id}]" if event.unit_id else ""
    return clip(f"{stamp} {event.kind}{unit} {event_detail(event)}", 220)


class EventLog(ThrottledLog):
    """A bounded log appended a few times a second; the filter rewrites it from the kept events."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_lines=EVENT_LOG_MAX, **kwargs)
        self.filter_text = ""
        self._state: MissionState | None = None

    def _start(self, state: MissionState) -> float | None:
        return state.mission["started_at"] if state.mission else None

    def _format_lines(self, state: MissionState, events: list[Event]) -> list[str]:
        start = self._start(state)
        lines = [format_event(e, start) for e in events[-EVENT_LOG_MAX:]]
        if self.filter_text:
            needle = self.filter_text.lower()
            lines = [ln for ln in lines if needle in ln.lower()]
        return lines

    def refresh_from(self, state: MissionState, changes: Changes, *, flush: bool = False) -> None:
        self._state = state
        if changes.reloaded:
            self.reset_lines(self._format_lines(state, changes.log_events))
            return
        self.queue_lines(self._format_lines(state, changes.log_events))
        self.flush(force=flush)

    def set_filter(self, text: str) -> None:
        self.filter_text = text.strip()
        if self._state is not None:
            self.reset_lines(self._format_lines(self._state, list(self._state.event_log)))
