"""What a mission's store events mean for its A2A task: :func:`translate` turns an event into
a task status update (:class:`Update`), or None for events a task does not report.
"""

from __future__ import annotations

from dataclasses import dataclass

from a2a.types import TaskState

from engine.models import Event, MissionStatus
from engine.store import Store

COMPLETED_MISSION = frozenset({MissionStatus.COMPLETED, MissionStatus.NOT_PUSHED})
USER_STOP_REASON = "stopped by the user"


@dataclass
class Update:
    """One task status change a store event makes."""

    state: TaskState
    text: str


def translate(event: Event, store: Store) -> Update | None:
    """The task status update an event of the mission means, or None for events a task does
    not report (logs, costs, agent output...)."""
    payload = event.payload
    working = TaskState.TASK_STATE_WORKING
    if event.kind == "epoch.created":
        epoch = store.get("epochs", payload.get("id"))
        return Update(working, f"epoch {epoch['number'] if epoch else '?'} started: planning")
    if event.kind == "epoch.status":
        epoch = store.get("epochs", payload.get("id"))
        number = epoch["number"] if epoch else "?"
        if payload.get("to") == "running":
            return Update(working, f"epoch {number} running")
        summary = f": {epoch['summary']}" if epoch and epoch.get("summary") else ""
        return Update(working, f"epoch {number} {payload.get('to')}{summary}")
    if event.kind == "unit.status" and payload.get("to") in ("merged", "failed"):
        unit = store.get("units", event.unit_id) if event.unit_id else None
        title = unit["title"] if unit else event.unit_id
        reason = f": {payload['reason']}" if payload.get("reason") else ""
        return Update(working, f"unit {event.unit_id} ({title}) {payload['to']}{reason}")
    if event.kind == "approval.requested":
        return Update(
            TaskState.TASK_STATE_INPUT_REQUIRED,
            f"approval #{payload.get('id')} pending: {payload.get('gate')}: {payload.get('title')}. "
            "Reply on this task with \"approve\" or \"deny\" (or `mc approve "
            f"{payload.get('id')}` / `mc deny {payload.get('id')}`).")
    if event.kind == "approval.status":
        return Update(working, f"approval #{payload.get('id')} {payload.get('to')}")
    if event.kind == "mission.status":
        to = payload.get("to")
        reason = payload.get("reason") or ""
        if to in COMPLETED_MISSION:
            return Update(TaskState.TASK_STATE_COMPLETED, f"mission #{event.mission_id} {to}: {reason}")
        if to == MissionStatus.STOPPED and reason == USER_STOP_REASON:
            return Update(TaskState.TASK_STATE_CANCELED, f"mission #{event.mission_id} {reason}")
        if to in (MissionStatus.RUNNING, MissionStatus.PAUSED, MissionStatus.PENDING):
            return Update(working, f"mission #{event.mission_id} {to}" + (f": {reason}" if reason else ""))
        return Update(TaskState.TASK_STATE_FAILED, f"mission #{event.mission_id} {to}: {reason}")
    return None


TERMINAL = frozenset({TaskState.TASK_STATE_COMPLETED, TaskState.TASK_STATE_FAILED,
                      TaskState.TASK_STATE_CANCELED})
