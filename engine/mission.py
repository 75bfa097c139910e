"""Mission rows: create, find a resumable one, heartbeat, finish."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Any

from engine.config import MissionConfig
from engine.models import AttemptStatus, MissionStatus, UnitStatus
from engine.store import Store

HEARTBEAT_STALE_SECONDS = 30.0
RESUMABLE = (MissionStatus.RUNNING, MissionStatus.PAUSED, MissionStatus.INTERRUPTED)


class MissionBusy(RuntimeError):
    """Another live process is running this mission."""


@dataclass
class MissionOutcome:
    mission_id: int
    status: MissionStatus
    reason: str
    exit_code: int
    next_objective: str | None = None


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def find_resumable(store: Store) -> dict[str, Any] | None:
    """The newest mission left running/paused/interrupted by a process that is gone."""
    rows = store.query(
        "SELECT * FROM missions WHERE status IN (?, ?, ?) ORDER BY id DESC LIMIT 1",
        tuple(s.value for s in RESUMABLE),
    )
    if not rows:
        return None
    mission = rows[0]
    if mission["pid"] != os.getpid() and pid_alive(mission["pid"]):
        fresh = (time.time() - (mission["heartbeat_at"] or 0)) < HEARTBEAT_STALE_SECONDS
        if fresh:
            raise MissionBusy(
                f"mission #{mission['id']} is running in process {mission['pid']}; "
                "attach with `mc dashboard` or stop it first"
            )
    return mission


def create_mission(
    store: Store, config: MissionConfig, *, objective: str, parent_mission_id: int | None = None
) -> int:
    project_id = store.ensure_project(config.target.name, config.target.path)
    with store.transaction():
        mission_id = store.insert(
            "missions",
            {
                "project_id": project_id,
                "parent_mission_id": parent_mission_id,
                "objective": objective,
                "status": MissionStatus.RUNNING.value,
                "config_json": json.dumps(config.model_dump(mode="json")),
                "base_branch": config.target.branch,
                "started_at": time.time(),
                "pid": os.getpid(),
                "heartbeat_at": time.time(),
            },
            event="mission.created",
        )
    return int(mission_id)


def adopt_for_resume(store: Store, mission_id: int) -> list[str]:
    """Take over an interrupted mission: dead agents' units go back to ready. Returns notes."""
    notes: list[str] = []
    with store.transaction():
        store.update("missions", mission_id, pid=os.getpid(), heartbeat_at=time.time())
        mission = store.get("missions", mission_id)
        if mission and mission["status"] != MissionStatus.RUNNING:
            store.set_status("missions", mission_id, MissionStatus.RUNNING, reason="resumed")
        for attempt in store.rows(
            "attempts", "mission_id = ? AND status = ?", (mission_id, AttemptStatus.RUNNING.value)
        ):
            store.set_status(
                "attempts", attempt["id"], AttemptStatus.ERROR,
                error="interrupted: the mission process died", ended_at=time.time(),
            )
        for unit in store.units(mission_id):
            if unit["status"] in (UnitStatus.RUNNING, UnitStatus.REVIEWING):
                store.set_status(
                    "units", unit["id"], UnitStatus.READY, reason="re-dispatched after restart"
                )
                notes.append(f"unit {unit['id']} re-dispatched (its agent died)")
        store.append_event("mission.resumed", mission_id=mission_id, notes=notes)
    return notes


def heartbeat(store: Store, mission_id: int) -> None:
    store.update("missions", mission_id, heartbeat_at=time.time())


def finish_mission(store: Store, mission_id: int, status: MissionStatus, reason: str) -> None:
    store.set_status(
        "missions", mission_id, status, reason=reason, outcome=reason, ended_at=time.time()
    )
