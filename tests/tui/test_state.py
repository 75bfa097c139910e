"""Pure logic behind the panes: coalescing, the cost summary and EMA, line formatting."""

from __future__ import annotations

from engine.models import Event
from engine.store import Store
from engine.views import agent_line
from mc_tui.widgets.cost_graph import ema_rate, sparkline, summarize
from mc_tui.widgets.event_log import format_event
from mc_tui.widgets.mission_state import (
    AGENT_LOG_MAX,
    MissionState,
    PendingChanges,
)


def ev(n: int, kind: str, mission_id: int | None = 1, unit_id: str | None = None, **payload) -> Event:  # type: ignore[no-untyped-def]
    return Event(id=n, ts=100.0 + n, kind=kind, mission_id=mission_id, unit_id=unit_id, payload=payload)


def test_pending_changes_coalesce_many_events_into_dirty_ids() -> None:
    pending = PendingChanges()
    for n in range(1000):
        pending.add(ev(n, "unit.status", unit_id="U1", id="U1", **{"from": "a", "to": "b"}), 1)
    pending.add(ev(1001, "attempt.status", id=7), 1)
    pending.add(ev(1002, "agent.event", attempt_id=8, slot=2, type="text", text="hi"), 1)
    pending.add(ev(1003, "merge.status", id=3), 1)
    pending.add(ev(1004, "cost", unit_id="U2", usd=0.1), 1)
    pending.add(ev(1005, "unit.status", mission_id=2, id="OTHER"), 1)  # another mission
    assert pending.dirty["units"] == {"U1", "U2"}
    assert pending.dirty["attempts"] == {7, 8}
    assert pending.dirty["merges"] == {3}
    assert pending.costs_dirty and pending.mission_dirty
    assert pending.count == 1005
    assert len(pending.agent_events) == 1


def test_new_missions_are_followed_only_when_asked() -> None:
    following = PendingChanges(follow_newest=True)
    following.add(ev(1, "mission.created", mission_id=5, id=5), 1)
    assert following.new_mission_id == 5
    pinned = PendingChanges(follow_newest=False)
    pinned.add(ev(1, "mission.created", mission_id=5, id=5), 1)
    assert pinned.new_mission_id is None


def test_state_applies_only_what_changed(tmp_path) -> None:
    store = Store(tmp_path / "m.db")
    mid = store.insert("missions", {"objective": "o", "status": "running", "started_at": 1.0})
    store.insert("units", {"id": "U1", "mission_id": mid, "title": "t", "status": "planned",
                           "created_at": 1.0, "updated_at": 1.0})
    state = MissionState(store, None)
    changes = state.load()
    assert changes.reloaded and state.mission_id == mid and "U1" in state.units
    first = store.last_event_id()
    store.set_status("units", "U1", "ready")
    pending = PendingChanges()
    for event in store.events_after(first):
        pending.add(event, mid)
    changes = state.apply(pending)
    assert changes.rows["units"] == {"U1"} and state.units["U1"]["status"] == "ready"
    # the same row again with no change: nothing to redraw
    again = PendingChanges()
    again.dirty["units"].add("U1")
    assert state.apply(again).rows["units"] == set()
    store.close()


def test_agent_log_per_slot_is_bounded(tmp_path) -> None:
    store = Store(tmp_path / "m.db")
    mid = store.insert("missions", {"objective": "o", "status": "running", "started_at": 1.0})
    state = MissionState(store, mid)
    state.load()
    pending = PendingChanges()
    for n in range(AGENT_LOG_MAX * 3):
        pending.add(ev(n, "agent.event", mission_id=mid, attempt_id=1, slot=1, type="text",
                       text=f"l{n}"), mid)
    state.apply(pending)
    assert len(state.agent_log[1]) == AGENT_LOG_MAX
    assert state.agent_log[1][-1] == f"l{AGENT_LOG_MAX * 3 - 1}"
    store.close()


def test_agent_lines_fold_tool_results() -> None:
    assert agent_line({"type": "tool_use", "tool": "Bash", "text": "pytest -q"}) == "▶ Bash: pytest -q"
    folded = agent_line({"type": "tool_result", "text": "3 passed\nline\nline\nline"})
    assert folded == "  ↳ 3 passed  (+3 lines)"
    assert len(agent_line({"type": "text", "text": "x" * 500})) == 160


def test_event_lines_are_relative_to_the_mission_start() -> None:
    line = format_event(ev(1, "unit.status", unit_id="U1", id="U1", reason="tests failed",
                           **{"from": "running", "to": "failed"}), start=95.0)
    assert line == "+00:06 unit.status [U1] U1 running → failed (tests failed)"
    hour = format_event(Event(id=1, ts=3700.0, kind="log", payload={"level": "warn", "message": "m"}), 0.0)
    assert hour == "+1:01:40 log [warn] m"


def test_cost_summary_buckets_and_projects_with_an_ema() -> None:
    costs = [(0.0 + 60 * n, 1.0, "sonnet" if n % 2 else "opus", "worker") for n in range(10)]
    s = summarize(costs, start=0.0, now=600.0, budget=20.0, wall_limit=1200.0, width=10)
    assert s.spent == 10.0
    assert s.columns[-1] == 10.0 and s.columns == sorted(s.columns)
    assert s.totals == {"sonnet": 5.0, "opus": 5.0}
    assert abs(s.ema_per_min - 1.0) < 0.05  # one dollar a minute, steadily
    assert abs(s.projected - 20.0) < 0.6  # ten more minutes at $1/min
    by_role = summarize(costs, start=0.0, now=600.0, budget=20.0, wall_limit=1200.0, width=10, by="role")
    assert by_role.totals == {"worker": 10.0}


def test_ema_reacts_to_a_recent_burst() -> None:
    calm = [(60.0 * n, 0.1) for n in range(10)]
    burst = calm + [(590.0, 5.0)]
    assert ema_rate(burst, 0.0, 600.0) > 5 * ema_rate(calm, 0.0, 600.0)


def test_sparkline_scales_to_its_max() -> None:
    assert sparkline([0, 1, 2, 4]) == " ▂▄█"
    assert sparkline([0, 0]) == "▁▁"


def test_workers_pane_shows_the_silence_of_a_running_session(tmp_path) -> None:
    """The silence since an attempt's last stream event grows on the clock ("quiet m:ss")
    until [agent] stall_seconds ends it; a fresh line resets it."""
    from mc_tui.widgets.workers import SILENCE_SHOWN_S, WorkersTable

    store = Store(tmp_path / "m.db")
    mid = store.insert("missions", {"objective": "o", "status": "running", "started_at": 1.0})
    store.insert("units", {"id": "U1", "mission_id": mid, "title": "t", "status": "running",
                           "created_at": 1.0, "updated_at": 1.0})
    aid = store.insert("attempts", {"mission_id": mid, "unit_id": "U1", "role": "worker",
                                    "backend": "claude", "model": "sonnet", "slot": 1,
                                    "status": "running", "started_at": 100.0})
    state = MissionState(store, mid)
    state.load()
    pending = PendingChanges()
    pending.add(ev(1, "agent.event", mission_id=mid, attempt_id=aid, slot=1, type="text",
                   text="working"), mid)  # ts 101
    state.apply(pending)
    assert state.last_output[aid] == 101.0
    table = WorkersTable()
    attempt = state.attempts[aid]
    assert "running" in str(table.cells(1, attempt, state, 101.0 + SILENCE_SHOWN_S - 1)[2])
    assert str(table.cells(1, attempt, state, 101.0 + 95)[2]) == "quiet 1:35"
    assert str(table.cells(1, attempt, state, 101.0 + 125)[2]) == "quiet 2:05"  # growing
    store.close()


def test_breakers_are_read_from_the_store_when_they_change(tmp_path) -> None:
    from engine.resilience.board import BreakerBoard

    store = Store(tmp_path / "m.db")
    mid = store.insert("missions", {"objective": "o", "status": "running", "started_at": 1.0})
    state = MissionState(store, mid)
    state.load()
    assert state.breakers == []
    first = store.last_event_id()
    board = BreakerBoard(1, 60.0)
    board.bind(store, mid, "pause")
    board.record("agent:claude/opus", False)
    pending = PendingChanges()
    for event in store.events_after(first):
        pending.add(event, mid)
    changes = state.apply(pending)
    assert changes.mission and [(b["component"], b["state"]) for b in state.breakers] == [
        ("agent:claude/opus", "open")]
    store.close()
