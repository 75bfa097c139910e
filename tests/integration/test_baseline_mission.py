"""The controller's baseline step in process (real repo, scripted backend)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.models import MissionStatus
from tests.integration.mission_support import events, make_controller


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_the_baseline_is_recorded_once_and_redone_after_a_kill_inside_it(tmp_path: Path) -> None:
    controller = make_controller(tmp_path, "")
    rt = controller.rt
    assert rt is not None
    # a killed run left a baseline row that reconcile turned into `error`, and no event
    rt.store.insert("verifications", {
        "mission_id": rt.mission_id, "batch_id": "baseline", "commit_sha": rt.repo.green_head(),
        "command": rt.config.target.verification.command, "status": "error",
        "started_at": 0.0})
    assert await controller._baseline(rt) is None
    assert await controller._baseline(rt) is None  # resumed again: not redone
    recorded = events(rt, "baseline.recorded")
    assert len(recorded) == 1 and recorded[0]["status"] == "passed"
    assert rt.queue.baseline_of(rt.repo.green_head()).red is False


@pytest.mark.anyio
async def test_must_pass_on_a_red_baseline_is_a_stop_with_the_reason(tmp_path: Path) -> None:
    controller = make_controller(
        tmp_path, "", '[target.verification]\ncommand = "echo no service; exit 4"\n'
                      'baseline = "must_pass"\nflaky_reruns = 0\n')
    rt = controller.rt
    assert rt is not None
    status, reason = await controller._baseline(rt)
    assert status == MissionStatus.FAILED
    assert "must_pass" in reason and "exit 4" in reason
    assert len(rt.store.rows("verifications")) == 1  # no re-run asked for
