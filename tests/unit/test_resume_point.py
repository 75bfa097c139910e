"""Resume is a starting phase: which one, read from a real store's epochs and events."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from engine.ledger import EpochLedger
from engine.models import EpochStatus, MissionStatus
from engine.pipeline.epochs import StartPoint, resume_point
from engine.store import Store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "m.db")


def _mission(store: Store) -> int:
    return int(store.insert("missions", {"objective": "o", "status": "running",
                                         "started_at": 0.0}, event="mission.created"))


def _epoch(store: Store, mission: int, number: int, status: EpochStatus) -> int:
    epoch = int(store.insert("epochs", {"mission_id": mission, "number": number,
                                        "status": EpochStatus.PLANNING.value,
                                        "started_at": time.time()}, event="epoch.created"))
    if status != EpochStatus.PLANNING:
        store.set_status("epochs", epoch, EpochStatus.RUNNING)
        if status != EpochStatus.RUNNING:
            store.set_status("epochs", epoch, status)
    return epoch


def test_a_new_mission_plans(store: Store) -> None:
    assert resume_point(store, _mission(store)) == StartPoint("plan")


@pytest.mark.parametrize("status", [EpochStatus.RUNNING, EpochStatus.INTERRUPTED])
def test_an_open_epoch_executes_again(store: Store, status: EpochStatus) -> None:
    mission = _mission(store)
    _epoch(store, mission, 1, EpochStatus.COMPLETED)
    epoch = _epoch(store, mission, 2, status)
    assert resume_point(store, mission) == StartPoint("execute", epoch)


def test_a_plan_cut_short_is_failed_and_planned_again(store: Store) -> None:
    mission = _mission(store)
    epoch = _epoch(store, mission, 1, EpochStatus.PLANNING)
    assert resume_point(store, mission) == StartPoint("plan")
    assert store.get("epochs", epoch)["status"] == EpochStatus.FAILED


def test_an_ended_epoch_without_its_decision_checks_the_objective(store: Store) -> None:
    mission = _mission(store)
    epoch = _epoch(store, mission, 1, EpochStatus.COMPLETED)
    assert resume_point(store, mission) == StartPoint("objective", epoch)


def test_a_recorded_decision_is_taken_as_is(store: Store) -> None:
    mission = _mission(store)
    epoch = _epoch(store, mission, 1, EpochStatus.COMPLETED)
    ledger = EpochLedger(store)
    ledger.record_objective(epoch, mission_id=mission, met=False, feedback="more", check=1)
    assert resume_point(store, mission) == StartPoint("decided", epoch)
    ledger.record_objective(epoch, mission_id=mission, met=True, feedback="done", check=2)
    assert resume_point(store, mission) == StartPoint(
        "decided", epoch, (MissionStatus.COMPLETED, "objective met: done"))


def test_a_decision_on_an_earlier_epoch_does_not_decide_the_last(store: Store) -> None:
    mission = _mission(store)
    first = _epoch(store, mission, 1, EpochStatus.COMPLETED)
    EpochLedger(store).record_objective(first, mission_id=mission, met=False, feedback="more",
                                        check=1)
    second = _epoch(store, mission, 2, EpochStatus.COMPLETED)
    assert resume_point(store, mission) == StartPoint("objective", second)
