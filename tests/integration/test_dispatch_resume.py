"""Units caught by a crash: finished work is reviewed, not redone; a dead agent's commits stay."""

from __future__ import annotations

from pathlib import Path

import pygit2
import pytest

from engine.controller import Controller
from engine.dispatch import run_unit
from engine.mission import adopt_for_resume, close_out
from engine.models import MissionStatus, UnitStatus
from engine.store import Store
from tests.integration.mission_support import (
    add_unit,
    commit_on_branch,
    events,
    make_controller,
    make_runtime,
    move_green,
)

REVIEW_PASSES = '''
[[interaction]]
role = "reviewer"
actions = [{ type = "text", text = '{"alignment": 9, "approach": 8, "tests": 8, "feedback": "good"}' }]
'''
WORKER_ADDS_A_FILE = '''
[[interaction]]
role = "worker"
actions = [
  { type = "write", path = "app/farewell.py", content = "def bye():\\n    return 'bye'\\n" },
  { type = "commit", message = "Add farewell" },
]
'''
FRIENDLY = 'def greet(name):\n    return f"hello {name}!"\n'


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_adopt_sends_finished_work_to_review_and_running_units_to_continue(tmp_path: Path) -> None:
    rt = make_runtime(tmp_path, REVIEW_PASSES)
    green = rt.repo.green_head()
    add_unit(rt, "running", UnitStatus.RUNNING, base_commit=green)
    add_unit(rt, "reviewing", UnitStatus.REVIEWING, base_commit=green, head_commit=green)
    # no review gate: a finished unit waits at the large-merge gate while still `running`
    add_unit(rt, "at-gate", UnitStatus.RUNNING, base_commit=green, head_commit=green)
    add_unit(rt, "queued", UnitStatus.QUEUED)
    notes = adopt_for_resume(rt.store, rt.mission_id)
    units = {u["id"]: (u["status"], u["resume_point"]) for u in rt.store.units(rt.mission_id)}
    assert units == {"running": ("ready", "continue"), "reviewing": ("ready", "review"),
                     "at-gate": ("ready", "review"), "queued": ("queued", None)}
    assert sum("finished work goes on" in n for n in notes) == 2


def test_approvals_left_pending_by_a_dead_process_expire(tmp_path: Path) -> None:
    rt = make_runtime(tmp_path, REVIEW_PASSES)
    push = rt.store.create_approval(mission_id=rt.mission_id, gate="push", title="push", timeout=60)
    notes = adopt_for_resume(rt.store, rt.mission_id)
    row = rt.store.get("approvals", push)
    assert (row["status"], row["decided_by"]) == ("expired", "resume")
    assert any("approval" in n and "expired" in n for n in notes)
    # and a mission that ends for good leaves none pending either
    fixup = rt.store.create_approval(mission_id=rt.mission_id, gate="fixup", title="f", timeout=60)
    close_out(rt.store, rt.mission_id, MissionStatus.STOPPED, "user stop")
    assert rt.store.get("approvals", fixup)["status"] == "expired"


@pytest.mark.anyio
@pytest.mark.parametrize("branch_kept", [True, False], ids=["branch", "branch-deleted"])
async def test_finished_work_is_reviewed_without_running_the_agent_again(
    tmp_path: Path, branch_kept: bool
) -> None:
    # no worker entry in the cassette: running the agent again would fail the unit
    rt = make_runtime(tmp_path, REVIEW_PASSES, "[review]\ngate_completion = true\n")
    base = rt.repo.green_head()
    head = commit_on_branch(rt, "mc/unit/u1", base, "app/greet.py", FRIENDLY, "friendlier")
    if not branch_kept:
        rt.repo.delete_branch("mc/unit/u1")
    add_unit(rt, "u1", UnitStatus.READY, base_commit=base, head_commit=head, attempt_count=1,
             branch="mc/unit/u1", resume_point="review")
    await run_unit(rt, "u1", 0)
    unit = rt.store.get("units", "u1")
    assert unit["status"] == UnitStatus.QUEUED, unit["reason"]
    assert unit["head_commit"] == head and unit["attempt_count"] == 1
    assert unit["resume_point"] is None
    roles = [a["role"] for a in rt.store.rows("attempts")]
    assert roles == ["reviewer"]
    assert [e["score"] for e in events(rt, "review.scored")]
    assert rt.repo.ref_head("refs/heads/mc/unit/u1") == head


@pytest.mark.anyio
async def test_a_dead_agent_that_committed_nothing_restarts_on_the_newest_green(
    tmp_path: Path,
) -> None:
    rt = make_runtime(tmp_path, WORKER_ADDS_A_FILE)
    base = rt.repo.green_head()
    rt.repo.set_owned_ref("refs/heads/mc/unit/u1", base, "test: the dead attempt's branch")
    moved = move_green(rt, base)
    add_unit(rt, "u1", UnitStatus.READY, base_commit=base, attempt_count=1,
             branch="mc/unit/u1", resume_point="continue")
    await run_unit(rt, "u1", 0)
    unit = rt.store.get("units", "u1")
    assert unit["status"] == UnitStatus.QUEUED, unit["reason"]
    assert unit["base_commit"] == moved and rt.repo.is_ancestor(moved, unit["head_commit"])


@pytest.mark.anyio
async def test_a_dead_agents_commits_and_base_are_kept(tmp_path: Path) -> None:
    rt = make_runtime(tmp_path, WORKER_ADDS_A_FILE)
    base = rt.repo.green_head()
    partial = commit_on_branch(rt, "mc/unit/u1", base, "app/greet.py", FRIENDLY, "half done")
    moved = move_green(rt, base)  # mc/green moved on while the mission was down
    add_unit(rt, "u1", UnitStatus.READY, base_commit=base, attempt_count=1,
             branch="mc/unit/u1", resume_point="continue")
    await run_unit(rt, "u1", 0)
    unit = rt.store.get("units", "u1")
    assert unit["status"] == UnitStatus.QUEUED, unit["reason"]
    assert unit["base_commit"] == base and unit["attempt_count"] == 2
    assert rt.repo.is_ancestor(partial, unit["head_commit"])  # the dead agent's commit is kept
    assert not rt.repo.is_ancestor(moved, unit["head_commit"])
    assert any("cut short" in (e.get("message") or "") for e in events(rt, "log"))


@pytest.mark.anyio
async def test_without_a_resume_point_a_unit_starts_afresh_at_green(tmp_path: Path) -> None:
    rt = make_runtime(tmp_path, WORKER_ADDS_A_FILE)
    base = rt.repo.green_head()
    stale = commit_on_branch(rt, "mc/unit/u1", base, "app/greet.py", FRIENDLY, "old attempt")
    moved = move_green(rt, base)
    add_unit(rt, "u1", UnitStatus.READY, base_commit=base, attempt_count=1, branch="mc/unit/u1")
    await run_unit(rt, "u1", 0)
    unit = rt.store.get("units", "u1")
    assert unit["status"] == UnitStatus.QUEUED, unit["reason"]
    assert unit["base_commit"] == moved
    assert not rt.repo.is_ancestor(stale, unit["head_commit"])


@pytest.mark.anyio
async def test_a_resumed_mission_saves_the_dead_agents_uncommitted_work(tmp_path: Path) -> None:
    first = make_controller(tmp_path, WORKER_ADDS_A_FILE)
    rt = first.rt
    assert rt is not None
    base = rt.repo.green_head()
    ws = await rt.pool.acquire("mc/unit/u1", base)
    (ws.path / "app" / "greet.py").write_text(FRIENDLY)  # edited, never committed
    add_unit(rt, "u1", UnitStatus.RUNNING, base_commit=base, attempt_count=1, branch="mc/unit/u1")
    rt.store.set_status("missions", rt.mission_id, MissionStatus.INTERRUPTED, reason="killed")
    first.lock.release()  # the process is gone

    resumed = Controller(rt.config, Store(rt.config.state_dir() / "mission.db"), resume=True)
    rt2 = resumed.prepare()
    assert rt2.store.get("units", "u1")["resume_point"] == "continue"
    tip = rt2.repo.ref_head("refs/heads/mc/unit/u1")
    assert tip != base and rt2.repo.is_ancestor(base, tip)
    saved = rt2.repo.pygit[tip].peel(pygit2.Commit)
    assert saved.message.startswith("wip:") and saved.tree["app"]["greet.py"].data.decode() == FRIENDLY
    await run_unit(rt2, "u1", 0)
    unit = rt2.store.get("units", "u1")
    assert unit["status"] == UnitStatus.QUEUED and unit["base_commit"] == base
    assert rt2.repo.is_ancestor(tip, unit["head_commit"])  # the new session built on the saved work
    resumed.lock.release()
