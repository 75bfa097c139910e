"""The unit ledger: the one writer of unit status, counters in the event's transaction,
and the migration that fills the counters of stores written by older versions."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from engine.ledger import EpochLedger, FixupWinner, Unit, UnitLedger
from engine.models import EpochStatus, UnitStatus
from engine.pipeline.epochs import StartPoint, resume_point
from engine.pipeline.state import MissionState
from engine.store import IllegalTransition, Store
from engine.store.migrations import migrate

ENGINE = Path(__file__).resolve().parents[2] / "engine"


def _unit(store: Store, mission_id: int, unit_id: str, status: str = "ready") -> None:
    now = time.time()
    store.insert("units", {"id": unit_id, "mission_id": mission_id, "title": unit_id,
                           "status": status, "created_at": now, "updated_at": now})


def _mission(store: Store) -> int:
    return int(store.insert("missions", {"objective": "o", "status": "running",
                                         "started_at": 0.0}))


def test_counters_move_with_their_events(tmp_path: Path) -> None:
    store = Store(tmp_path / "m.db")
    mission = _mission(store)
    _unit(store, mission, "u")
    ledger = UnitLedger(store)
    assert ledger.record_review("u", mission_id=mission, passed=False, score=3.0) == 1
    assert ledger.record_review("u", mission_id=mission, passed=True, score=9.0) == 1
    assert ledger.record_review("u", mission_id=mission, passed=False, score=2.0) == 2
    assert ledger.record_fixup_decision("u", mission_id=mission, round=1, candidate=None) == 1
    unit = ledger.get("u")
    assert isinstance(unit, Unit) and unit.status == UnitStatus.READY
    assert (unit.review_rejections, unit.fixup_rounds) == (2, 1)
    kinds = [e.kind for e in store.events_after(0)]
    assert kinds.count("review.scored") == 3 and kinds.count("fixup.winner") == 1


def test_an_unchanged_row_is_not_built_again_and_any_change_is_seen(tmp_path: Path) -> None:
    """The ledger memoises the Unit built from a row: the same object while the row is the
    same, a new one after any write to it (this process's, or another connection's)."""
    store = Store(tmp_path / "m.db")
    mission = _mission(store)
    _unit(store, mission, "u")
    _unit(store, mission, "v")
    ledger = UnitLedger(store)
    first = ledger.units(mission)
    assert [u.id for u in first] == ["u", "v"]
    assert ledger.units(mission)[0] is first[0] and ledger.get("u") is first[0]
    ledger.move("u", UnitStatus.RUNNING)
    moved = ledger.get("u")
    assert moved is not first[0] and moved.status == UnitStatus.RUNNING
    assert ledger.units(mission)[1] is first[1]  # the other row did not change
    other = sqlite3.connect(tmp_path / "m.db")  # another process's write, JSON column and all
    with other:
        other.execute("UPDATE units SET dependencies = ? WHERE id = 'v'", (json.dumps(["u"]),))
    other.close()
    assert ledger.units(mission)[1].dependencies == ["u"]
    assert ledger.epoch_units(0) == [] and ledger.get("nobody") is None


def test_a_failed_transaction_loses_the_event_and_the_count_together(tmp_path: Path) -> None:
    store = Store(tmp_path / "m.db")
    mission = _mission(store)
    _unit(store, mission, "u")
    ledger = UnitLedger(store)
    with pytest.raises(RuntimeError), store.transaction():
        ledger.record_review("u", mission_id=mission, passed=False)
        raise RuntimeError("crash before commit")
    assert ledger.review_rejections("u") == 0
    assert not [e for e in store.events_after(0) if e.kind == "review.scored"]


def test_moves_are_checked_and_illegal_ones_skipped_only_when_asked(tmp_path: Path) -> None:
    store = Store(tmp_path / "m.db")
    mission = _mission(store)
    _unit(store, mission, "u", "merged")
    ledger = UnitLedger(store)
    with pytest.raises(IllegalTransition):
        ledger.move("u", UnitStatus.QUEUED)
    ledger.move_if_legal("u", UnitStatus.QUEUED, head_commit="abc")  # merged is final
    row = store.get("units", "u")
    assert row is not None and (row["status"], row["head_commit"]) == ("merged", "abc")


def test_the_migration_fills_the_counters_of_an_old_store(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, target=6)  # the schema before the ledger's columns (migration 7)
    conn.execute("INSERT INTO missions (id, objective, status, started_at) VALUES (1, 'o', "
                 "'interrupted', 0)")
    for uid in ("a", "b"):
        conn.execute("INSERT INTO units (id, mission_id, title, status, created_at, updated_at) "
                     "VALUES (?, 1, ?, 'fixup', 0, 0)", (uid, uid))
    events = [("review.scored", "a", {"passed": False}), ("review.scored", "a", {"passed": True}),
              ("review.scored", "a", {"score": 1.0}), ("review.scored", "b", {"passed": True}),
              ("fixup.winner", "a", {"round": 1}), ("fixup.winner", "a", {"round": 2}),
              ("fixup.started", "b", {"round": 1})]
    for kind, uid, payload in events:
        conn.execute("INSERT INTO events (ts, kind, mission_id, unit_id, payload) "
                     "VALUES (0, ?, 1, ?, ?)", (kind, uid, json.dumps(payload)))
    conn.close()
    ledger = UnitLedger(Store(path))  # opening migrates
    a, b = ledger.get("a"), ledger.get("b")
    assert a is not None and (a.review_rejections, a.fixup_rounds) == (2, 2)
    assert b is not None and (b.review_rejections, b.fixup_rounds) == (0, 0)


def test_only_the_ledger_writes_unit_status() -> None:
    writers = []
    for path in ENGINE.rglob("*.py"):
        text = path.read_text()
        if re.search(r'set_status\(\s*"units"', text) and path.name not in ("ledger.py", "db.py"):
            writers.append(str(path.relative_to(ENGINE)))
        if re.search(r'UPDATE units SET [^"]*status', text):
            writers.append(str(path.relative_to(ENGINE)))
    assert writers == []


def test_migration_13_turns_an_old_stores_decisions_into_columns(tmp_path: Path) -> None:
    """A store written at migration 10 (decisions only in event payloads) resumes the same:
    the objective decision, the cost and stall figures and an undelivered fixup winner."""
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, target=10)
    conn.execute("INSERT INTO missions (id, objective, status, started_at) VALUES (1, 'o', "
                 "'interrupted', 0)")
    for epoch in (1, 2, 3):
        conn.execute("INSERT INTO epochs (id, mission_id, number, status, started_at) "
                     "VALUES (?, 1, ?, 'completed', 0)", (epoch, epoch))
    for uid in ("won", "denied", "lost"):
        conn.execute("INSERT INTO units (id, mission_id, title, status, created_at, updated_at) "
                     "VALUES (?, 1, ?, 'fixup', 0, 0)", (uid, uid))
    winner = {"round": 2, "candidate": 3, "approach": "minimal", "head": "ab" * 20}
    events = [
        ("epoch.feedback", None, {"epoch_id": 1, "merged": 2, "failed": 1, "cost": 0.5,
                                  "tests_passed": 10, "tests_failed": 1, "lint_errors": 0}),
        ("epoch.status", None, {"id": 1, "from": "running", "to": "completed"}),
        ("objective.checked", None, {"met": False, "feedback": "add the docs", "check": 1}),
        ("epoch.feedback", None, {"epoch_id": 2, "merged": 1, "failed": 0, "cost": 0.25}),
        ("epoch.status", None, {"id": 2, "from": "running", "to": "completed"}),
        ("objective.checked", None, {"met": True, "feedback": "all there", "check": 2}),
        ("epoch.status", None, {"id": 3, "from": "running", "to": "completed"}),
        ("fixup.winner", "won", winner),
        ("fixup.winner", "denied", winner),
        ("unit.status", "denied", {"id": "denied", "from": "fixup", "to": "failed"}),
        ("fixup.winner", "lost", {"round": 1, "candidate": None, "reason": "none verified"}),
    ]
    for kind, uid, payload in events:
        conn.execute("INSERT INTO events (ts, kind, mission_id, unit_id, payload) "
                     "VALUES (5, ?, 1, ?, ?)", (kind, uid, json.dumps(payload)))
    conn.close()

    store = Store(path)  # opening migrates
    epochs = EpochLedger(store).epochs(1)
    assert [(e.units_merged, e.cost_usd, e.tests_passed) for e in epochs] == [
        (2, 0.5, 10), (1, 0.25, None), (0, 0.0, None)]
    assert [e.feedback_at is not None for e in epochs] == [True, True, False]
    assert [(e.objective_met, e.objective_feedback) for e in epochs] == [
        (False, "add the docs"), (True, "all there"), (None, None)]
    # epoch 3 completed after the last check: the resumed run checks the objective again
    assert resume_point(store, 1) == StartPoint("objective", 3)
    units = UnitLedger(store)
    assert units.pending_winner("won") == FixupWinner(round=2, candidate=3, approach="minimal",
                                                      head="ab" * 20)
    assert units.pending_winner("denied") is None and units.pending_winner("lost") is None
    units.move("won", UnitStatus.QUEUED)  # delivered: no longer pending
    assert units.pending_winner("won") is None

    state = MissionState(rt=SimpleNamespace(epochs=EpochLedger(store), mission_id=1),  # type: ignore[arg-type]
                         plugins=None, started=0.0)  # type: ignore[arg-type]
    state.restore()
    assert (state.objective_checks, state.objective_feedback) == (2, "add the docs")
    assert state.ema.samples == 2 and [p.units_merged for p in state.evaluator.history] == [2, 1]


def test_an_epochs_feedback_and_its_end_land_together(tmp_path: Path) -> None:
    store = Store(tmp_path / "m.db")
    mission = _mission(store)
    epoch = int(store.insert("epochs", {"mission_id": mission, "number": 1,
                                        "status": "running", "started_at": 0.0}))
    ledger = EpochLedger(store)
    with pytest.raises(RuntimeError), store.transaction():
        ledger.record_feedback(epoch, mission_id=mission, status=EpochStatus.COMPLETED,
                               summary="1 merged", merged=1, failed=0, cost=0.1,
                               tests_passed=3, tests_failed=0, lint_errors=None)
        raise RuntimeError("crash before commit")
    decided = ledger.get(epoch)
    assert decided is not None and decided.status == "running" and decided.feedback_at is None
    assert not [e for e in store.events_after(0) if e.kind == "epoch.feedback"]
    ledger.record_feedback(epoch, mission_id=mission, status=EpochStatus.COMPLETED,
                           summary="1 merged", merged=1, failed=0, cost=0.1, tests_passed=3,
                           tests_failed=0, lint_errors=None)
    decided = ledger.get(epoch)
    assert decided is not None and (decided.status, decided.units_merged) == ("completed", 1)
