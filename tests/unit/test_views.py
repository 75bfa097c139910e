"""engine/views.py: the event lines and touched rows the TUI and mc live share."""

from __future__ import annotations

import json

from engine.models import Event
from engine.views import Touched, agent_line, event_detail, event_from_row, touched


def ev(kind: str, unit_id: str | None = None, **payload: object) -> Event:
    return Event(id=1, ts=0.0, kind=kind, mission_id=1, unit_id=unit_id, payload=payload)


def test_event_detail_per_kind() -> None:
    status = ev("unit.status", "u1", id="u1", **{"from": "queued", "to": "fixup"},
                reason="tests failed")
    assert event_detail(status) == "u1 queued → fixup (tests failed)"
    assert event_detail(ev("log", level="warning", message="m")) == "[warning] m"
    assert event_detail(ev("cost", role="worker", model="opus", usd=0.1234)) == "worker opus $0.123"
    assert event_detail(ev("merge.created", id=4, branch="b", note="", mission_id=1)) == "4 branch=b"


def test_agent_lines_fold_and_clip() -> None:
    assert agent_line({"type": "tool_use", "tool": "Bash", "text": "ls\nx"}) == "▶ Bash: ls"
    assert agent_line({"type": "tool_result", "text": "a\nb\nc"}) == "  ↳ a  (+2 lines)"
    assert len(agent_line({"text": "x" * 500}, width=200)) == 200


def test_touched_rows() -> None:
    assert touched(ev("agent.event", attempt_id=7)) == Touched(rows=(("attempts", 7),))
    assert touched(ev("attempt.started", "u1", id=7)) == Touched(
        rows=(("attempts", 7), ("units", "u1")))
    assert touched(ev("unit.status", "u1", id="u1")) == Touched(rows=(("units", "u1"),))
    assert touched(ev("cost", "u1", usd=1.0)) == Touched(rows=(("units", "u1"),), mission=True)
    assert touched(ev("mission.status", id=1)) == Touched(mission=True)
    assert touched(ev("epoch.status", id=3)) == Touched(rows=(("epochs", 3),), mission=True)
    assert touched(ev("fixup.winner", "u1", round=1)) == Touched()


def test_event_from_row() -> None:
    row = {"id": 3, "ts": 1.5, "kind": "log", "mission_id": 1, "unit_id": None,
           "payload": json.dumps({"message": "hi"})}
    assert event_from_row(row) == Event(id=3, ts=1.5, kind="log", mission_id=1,
                                        payload={"message": "hi"})
