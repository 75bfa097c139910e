"""The span builder over a real store: a Ctrl-C'd mission resumed by another process
continues its trace, nothing is exported twice (issue 13, [tracing])."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from engine.config import ConfigError, load_config
from engine.mission import adopt_for_resume, finish_mission
from engine.models import MissionStatus
from engine.services.tracing.spans import SpanRecord, TraceBuilder
from engine.store import Store


def feed(store: Store, builder: TraceBuilder, after: int = 0) -> int:
    events = store.events_after(after)
    for event in events:
        builder.handle(event)
    return events[-1].id if events else after


def test_an_interrupted_then_resumed_mission_continues_one_trace(tmp_path: Path) -> None:
    store = Store(tmp_path / "mission.db")
    now = time.time()
    mid = store.insert("missions", {"objective": "o", "status": "running", "started_at": now},
                       event="mission.created")
    eid = store.insert("epochs", {"mission_id": mid, "number": 1, "status": "running",
                                  "started_at": now}, event="epoch.created")
    store.insert("units", {"id": "u1", "mission_id": mid, "epoch_id": eid, "title": "T",
                           "status": "ready", "created_at": now, "updated_at": now},
                 event="unit.created")
    store.set_status("units", "u1", "running")
    aid = store.insert("attempts", {"mission_id": mid, "unit_id": "u1", "role": "worker",
                                    "backend": "claude", "model": "sonnet", "status": "running",
                                    "started_at": now})
    store.append_event("attempt.started", mission_id=mid, unit_id="u1", attempt_id=aid,
                       role="worker", backend="claude", model="sonnet", slot=0)
    store.set_status("attempts", aid, "error", error="cancelled", failure_reason="cancelled")
    store.set_status("epochs", eid, "interrupted")
    finish_mission(store, mid, MissionStatus.INTERRUPTED, "interrupted")  # Ctrl-C

    first: list[SpanRecord] = []
    seen = feed(store, TraceBuilder(store, first.append, export_after=0))
    assert {s.name for s in first} == {"mission", "epoch", "unit", "invoke_agent worker"}
    assert all(s.status == "error" for s in first)
    assert all(s.attributes.get("mc.interrupted") for s in first if s.name != "invoke_agent worker")

    # another process resumes: the same epoch and unit go on
    adopt_for_resume(store, mid)
    store.set_status("epochs", eid, "running")
    store.set_status("units", "u1", "ready")
    store.set_status("units", "u1", "running")
    store.set_status("units", "u1", "queued")
    store.set_status("units", "u1", "merged")
    store.set_status("epochs", eid, "completed")
    finish_mission(store, mid, MissionStatus.COMPLETED, "done")
    assert seen < store.last_event_id()

    second: list[SpanRecord] = []
    feed(store, TraceBuilder(store, second.append))  # replays from the first event
    assert not {s.span_id for s in first} & {s.span_id for s in second}, "exported twice"
    spans = first + second
    assert len({s.trace_id for s in spans}) == 1
    by_id = {s.span_id: s for s in spans}
    assert [s.name for s in spans if s.parent_id is None] == ["mission"]
    assert all(s.parent_id in by_id for s in spans if s.parent_id is not None)
    assert sorted(s.name for s in second) == ["epoch", "mission", "unit"]
    for span in second:
        assert span.attributes["mc.continued"] is True
        assert span.links and span.links[0][1] in {s.span_id for s in first}
        assert by_id[span.parent_id].name == {"mission": "mission", "epoch": "mission",
                                              "unit": "epoch"}[span.name]
        assert span.start >= max(s.end for s in first) - 1
    unit = next(s for s in second if s.name == "unit")
    assert unit.attributes["mc.unit.status"] == "merged" and unit.status == "unset"
    assert by_id[unit.parent_id].attributes["mc.continued"] is True
    store.close()


def test_a_bad_tracing_endpoint_names_its_key(tmp_path: Path) -> None:
    path = tmp_path / "mission-control.toml"
    path.write_text('[tracing]\nenabled = true\nendpoint = "127.0.0.1:4318"\n')
    with pytest.raises(ConfigError, match=r"tracing\.endpoint: .*http"):
        load_config(path)
    path.write_text('[tracing]\nendpoint = "https://me:secret@collector.example"\n')
    with pytest.raises(ConfigError, match=r"tracing\.endpoint: .*credentials"):
        load_config(path)
    path.write_text('[tracing]\nenabled = true\n')
    from engine.config import unavailable_notes

    assert unavailable_notes(load_config(path)) == []
