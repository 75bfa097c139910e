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


def test_a_lost_mission_says_how_to_resume() -> None:
    """A running mission whose heartbeat stopped is shown as lost with the resume command."""
    bar = StatusBar(target="demo", budget=10.0)
    now = time.time()
    lost = {**_mission("running", ""), "ended_at": None, "heartbeat_at": now - 120}
    text = bar.render_status(_State(lost), now).plain
    assert "lost" in text and "running" not in text and "mc mission --resume" in text
    alive = {**lost, "heartbeat_at": now - 1}
    text = bar.render_status(_State(alive), now).plain
    assert "running" in text and "lost" not in text


def test_open_breakers_are_shown_while_the_mission_is_degraded() -> None:
    bar = StatusBar(target="demo", budget=10.0)
    state = _State(_mission("running", ""))
    state.breakers = [{"component": "agent:claude/opus", "state": "open", "failures": 3},  # type: ignore[attr-defined]
                      {"component": "planner", "state": "closed", "failures": 0}]
    text = bar.render_status(state, time.time()).plain
    assert "breaker agent:claude/opus open" in text and "planner" not in text
    state.breakers = []  # type: ignore[attr-defined]
    assert "breaker" not in bar.render_status(state, time.time()).plain
