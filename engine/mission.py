"""Mission rows and ownership: create, adopt for resume, heartbeat, close out.

One process owns a target's missions at a time: it holds an exclusive ``flock`` on
``<state dir>/mission.lock`` for as long as it lives (the kernel drops it when the process
dies, even on SIGKILL), so two ``mc`` processes can never drive the same pool and refs.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from engine import clock
from engine.config import MissionConfig
from engine.ledger import UnitLedger
from engine.models import (
    TERMINAL_UNIT_STATUSES,
    ApprovalStatus,
    AttemptStatus,
    MergeStatus,
    MissionStatus,
    UnitStatus,
)
from engine.store import Store

RESUMABLE = (MissionStatus.RUNNING, MissionStatus.PAUSED, MissionStatus.INTERRUPTED)
OPEN_MERGES = (MergeStatus.QUEUED, MergeStatus.MERGING, MergeStatus.VERIFYING)


class MissionBusy(RuntimeError):
    """Another live process drives missions on this target."""


@dataclass
class MissionOutcome:
    mission_id: int
    status: MissionStatus
    reason: str
    exit_code: int
    next_objective: str | None = None


class MissionLock:
    """The exclusive, process-lifetime lock on a target's state dir."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "mission.lock"
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")  # noqa: SIM115 - held open for the life of the process
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise MissionBusy(
                f"another mc ({holder}) is running a mission on this target; attach with "
                "`mc dashboard`, or stop it first"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def find_resumable(store: Store) -> dict[str, Any] | None:
    """The newest mission left running, paused or interrupted (call while holding the lock)."""
    rows = store.query(
        "SELECT * FROM missions WHERE status IN (?, ?, ?) ORDER BY id DESC LIMIT 1",
        tuple(s.value for s in RESUMABLE),
    )
    return rows[0] if rows else None


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
                "started_at": clock.now(),
                "pid": os.getpid(),
                "heartbeat_at": clock.now(),
            },
            event="mission.created",
        )
    return int(mission_id)


def adopt_for_resume(store: Store, mission_id: int) -> list[str]:
    """Take over an interrupted mission: dead agents' units go back to ready. Returns notes."""
    notes: list[str] = []
    with store.transaction():
        # what the dead run wrote ends here (observers replaying the mission need it)
        last_event_before = store.last_event_id()
        store.update("missions", mission_id, pid=os.getpid(), heartbeat_at=clock.now())
        mission = store.get("missions", mission_id)
        if mission and mission["status"] != MissionStatus.RUNNING:
            store.set_status("missions", mission_id, MissionStatus.RUNNING, reason="resumed",
                             ended_at=None)
        for attempt in store.rows(
            "attempts", "mission_id = ? AND status = ?", (mission_id, AttemptStatus.RUNNING.value)
        ):
            store.set_status(
                "attempts", attempt["id"], AttemptStatus.ERROR,
                error="interrupted: the mission process died", ended_at=clock.now(),
            )
        ledger = UnitLedger(store)
        for unit in ledger.units(mission_id):
            finished = unit.head_commit  # set only once this attempt's agent finished
            if unit.status in (UnitStatus.RUNNING, UnitStatus.REVIEWING) and finished:
                # in review or at a gate: the finished work goes on, it is not redone
                ledger.move(unit.id, UnitStatus.READY, resume_point="review",
                            reason="re-dispatched after restart: its finished work goes on")
                notes.append(f"unit {unit.id}: its finished work goes on to review and the queue")
            elif unit.status in (UnitStatus.RUNNING, UnitStatus.REVIEWING):
                # runs again; commits the dead agent made are kept (see dispatch.starting_point)
                ledger.move(unit.id, UnitStatus.READY, resume_point="continue",
                            reason="re-dispatched after restart")
                notes.append(f"unit {unit.id} re-dispatched (its agent died)")
        # nobody waits for these any more; a gate asks again when its action comes up again
        for approval in expire_pending_approvals(
            store, mission_id, "the mission process died while waiting", by="resume"
        ):
            notes.append(f"approval {approval['id']} ({approval['gate']}) expired with its process")
        store.append_event("mission.resumed", mission_id=mission_id, notes=notes,
                           last_event_before=last_event_before)
    return notes


def heartbeat(store: Store, mission_id: int, active_s: float) -> None:
    store.update("missions", mission_id, heartbeat_at=clock.now(), active_s=round(active_s, 3))


def close_out(store: Store, mission_id: int, status: MissionStatus, reason: str) -> None:
    """End a mission for good: nothing it left open stays open (units, queued merges)."""
    with store.transaction():
        ledger = UnitLedger(store)
        for unit in ledger.units(mission_id):
            if unit.status not in TERMINAL_UNIT_STATUSES:
                ledger.move(unit.id, UnitStatus.CANCELLED,
                            reason=f"mission {status}: {reason}"[:500])
        for merge in store.rows(
            "merges", "mission_id = ? AND status IN (?, ?, ?)",
            (mission_id, *(m.value for m in OPEN_MERGES)),
        ):
            store.set_status("merges", merge["id"], MergeStatus.SKIPPED, reason=f"mission {status}")
        expire_pending_approvals(store, mission_id, f"mission {status}", by="mc")
        finish_mission(store, mission_id, status, reason)


def expire_pending_approvals(
    store: Store, mission_id: int, reason: str, *, by: str
) -> list[dict[str, Any]]:
    """Expire (deny, the safe default) the mission's approvals nobody will wait for."""
    pending = store.rows(
        "approvals", "mission_id = ? AND status = ?", (mission_id, ApprovalStatus.PENDING.value)
    )
    for approval in pending:
        store.set_status("approvals", approval["id"], ApprovalStatus.EXPIRED, reason=reason,
                         decided_at=clock.now(), decided_by=by)
    return pending


def finish_mission(store: Store, mission_id: int, status: MissionStatus, reason: str) -> None:
    store.set_status(
        "missions", mission_id, status, reason=reason, outcome=reason, ended_at=clock.now()
    )
