"""The status bar says when the objective is met but mc/green was not pushed."""

from __future__ import annotations

import time
from typing import Any

from mc_tui.widgets.status_bar import StatusBar


class _State:
    def __init__(self, mission: dict[str, Any]) -> None:
        self.mission = mission

    def current_epoch(self) -> dict[str, Any]:
        return {"number": 1}


def _mission(status: str, outcome: str) -> dict[str, Any]:
    now = time.time()
    return {"id": 7, "status": status, "outcome": outcome, "objective": "do it",
            "started_at": now - 5, "ended_at": now, "total_cost_usd": 0.5}


def test_not_pushed_is_shown_with_its_reason() -> None:
    bar = StatusBar(target="demo", budget=10.0)
    text = bar.render_status(_State(_mission(
        "not_pushed", "objective met, not pushed: the remote rejected the push: "
        "[remote rejected] (branch is currently checked out)")), time.time()).plain
    assert "not_pushed" in text and "not pushed: the remote rejected the push" in text


def test_completed_shows_no_push_note() -> None:
    bar = StatusBar(target="demo", budget=10.0)
    text = bar.render_status(_State(_mission("completed", "objective met: done")), time.time()).plain
    assert "completed" in text and "not pushed" not in text
