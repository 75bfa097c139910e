"""A real mission (real repo, scripted agents) with the worked example plugin registered."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from engine.models import MissionStatus
from tests.e2e.conftest import AMBITION_OK, OBJECTIVE_MET, plan_entry, worker_entry
from tests.integration.mission_support import make_controller
from tests.support.plugins import use_example

CASSETTE = (plan_entry("Add a farewell", "app/bye.py") + AMBITION_OK + OBJECTIVE_MET
            + worker_entry("Add a farewell", "app/bye.py", "def bye():\\n    return 'bye'\\n"))


def test_the_audit_observer_logs_every_event_of_the_mission(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_example(monkeypatch)
    log = tmp_path / "audit.jsonl"
    controller = make_controller(tmp_path, CASSETTE, f'[plugins.audit]\npath = "{log}"\n')
    assert controller.plugins.get("audit") is not None
    outcome = anyio.run(controller.run)
    assert outcome.status == MissionStatus.COMPLETED
    logged = [json.loads(line) for line in log.read_text().splitlines()]
    expected = controller.store.events_after(0, outcome.mission_id)
    assert [e["id"] for e in logged] == [e.id for e in expected]  # all, in order, once
    kinds = [e["kind"] for e in logged]
    assert kinds[0] == "mission.created" and "unit.reward" in kinds
    assert logged[-1]["kind"] == "mission.status" and logged[-1]["payload"]["to"] == "completed"
