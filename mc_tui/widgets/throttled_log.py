"""A bounded Log that appends queued lines at most a few times a second.

Every append auto-scrolls, and a scroll costs Textual a layout pass of the whole screen;
batching appends keeps the UI answering keys while thousands of lines a second arrive.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from typing import Any

from textual.widgets import Log

FLUSH_S = 0.25


class ThrottledLog(Log):
    def __init__(self, *, max_lines: int, **kwargs: Any) -> None:
        super().__init__(max_lines=max_lines, auto_scroll=True, **kwargs)
        self._queued: deque[str] = deque(maxlen=max_lines)
        self._flushed_at = 0.0

    def queue_lines(self, lines: Iterable[str]) -> None:
        self._queued.extend(lines)

    def flush(self, *, force: bool = False) -> None:
        """Append the queued lines if the last append is old enough (or ``force``)."""
        if not self._queued:
            return
        now = time.monotonic()
        if not force and now - self._flushed_at < FLUSH_S:
            return
        self._flushed_at = now
        lines = list(self._queued)
        self._queued.clear()
        self.write_lines(lines)

    def reset_lines(self, lines: Iterable[str]) -> None:
        """Replace the content now (a user action: filter, other slot, other mission)."""
        self._queued.clear()
        self.clear()
        lines = list(lines)
        if lines:
            self.write_lines(lines)
