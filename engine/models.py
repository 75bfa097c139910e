"""Domain models and status enums shared by the engine, the store and the UIs."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field


class MissionStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"  # objective met
    NOT_PUSHED = "not_pushed"  # objective met, but mc/green could not be pushed (auto_push)
    STOPPED = "stopped"  # a stop condition: rounds, wall time, budget, user
    STALLED = "stalled"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # Ctrl-C or crash; resumable


class EpochStatus(StrEnum):
    PLANNING = "planning"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


class UnitStatus(StrEnum):
    PLANNED = "planned"  # an inner node of the plan tree, or a leaf not yet ready
    READY = "ready"  # a leaf whose dependencies are satisfied
    RUNNING = "running"
    REVIEWING = "reviewing"
    QUEUED = "queued"  # waiting in the merge queue
    MERGING = "merging"
    VERIFYING = "verifying"
    FIXUP = "fixup"
    MERGED = "merged"  # in mc/green
    FAILED = "failed"
    BLOCKED = "blocked"
    CANCELLED = "cancelled"


TERMINAL_UNIT_STATUSES = frozenset(
    {UnitStatus.MERGED, UnitStatus.FAILED, UnitStatus.BLOCKED, UnitStatus.CANCELLED}
)

# Which unit transitions are legal. MERGED is final: nothing may take a merged unit back.
UNIT_TRANSITIONS: dict[UnitStatus, frozenset[UnitStatus]] = {
    UnitStatus.PLANNED: frozenset(
        {UnitStatus.READY, UnitStatus.RUNNING, UnitStatus.CANCELLED, UnitStatus.BLOCKED,
         UnitStatus.FAILED, UnitStatus.MERGED}
    ),
    UnitStatus.READY: frozenset(
        {UnitStatus.RUNNING, UnitStatus.CANCELLED, UnitStatus.BLOCKED, UnitStatus.PLANNED}
    ),
    UnitStatus.RUNNING: frozenset(
        {UnitStatus.REVIEWING, UnitStatus.QUEUED, UnitStatus.FAILED, UnitStatus.READY,
         UnitStatus.BLOCKED, UnitStatus.CANCELLED, UnitStatus.RUNNING,
         UnitStatus.FIXUP}  # its precheck failed, or it conflicts with mc/green
    ),
    UnitStatus.REVIEWING: frozenset(
        {UnitStatus.QUEUED, UnitStatus.RUNNING, UnitStatus.READY, UnitStatus.FAILED,
         UnitStatus.CANCELLED,
         UnitStatus.FIXUP}  # reviewed, and it conflicts with mc/green (engine/dispatch.py)
    ),
    UnitStatus.QUEUED: frozenset(
        {UnitStatus.MERGING, UnitStatus.FIXUP, UnitStatus.FAILED, UnitStatus.CANCELLED,
         UnitStatus.MERGED, UnitStatus.READY,
         UnitStatus.BLOCKED}  # stacked on a dependency that failed (engine/stacking.py)
    ),
    UnitStatus.MERGING: frozenset(
        {UnitStatus.VERIFYING, UnitStatus.MERGED, UnitStatus.FIXUP, UnitStatus.FAILED,
         UnitStatus.QUEUED, UnitStatus.CANCELLED}
    ),
    UnitStatus.VERIFYING: frozenset(
        {UnitStatus.MERGED, UnitStatus.FIXUP, UnitStatus.FAILED, UnitStatus.QUEUED,
         UnitStatus.CANCELLED}
    ),
    UnitStatus.FIXUP: frozenset(
        {UnitStatus.QUEUED, UnitStatus.FAILED, UnitStatus.READY, UnitStatus.CANCELLED,
         UnitStatus.MERGED}
    ),
    UnitStatus.MERGED: frozenset(),
    UnitStatus.FAILED: frozenset({UnitStatus.READY, UnitStatus.PLANNED}),  # replanned / retried
    UnitStatus.BLOCKED: frozenset({UnitStatus.READY, UnitStatus.CANCELLED, UnitStatus.FAILED}),
    UnitStatus.CANCELLED: frozenset(),
}


class AttemptStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    BLOCKED = "blocked"
    TIMEOUT = "timeout"
    BUDGET = "budget"
    ERROR = "error"


class MergeStatus(StrEnum):
    QUEUED = "queued"
    MERGING = "merging"
    VERIFYING = "verifying"
    PROMOTED = "promoted"
    CONFLICT = "conflict"
    FAILED = "failed"  # verification failed and this branch was the culprit
    REQUEUED = "requeued"  # innocent member of a failed batch, retried
    SKIPPED = "skipped"  # already in mc/green (reconciled)
    WITHDRAWN = "withdrawn"  # a stacked branch whose dependency failed or was redone


class VerificationStatus(StrEnum):
    RUNNING = "running"
    PASSED = "passed"
    FAILED = "failed"
    TIMEOUT = "timeout"
    ERROR = "error"
    CANCELLED = "cancelled"  # a speculative candidate discarded mid-run (its group killed)


class ApprovalStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"  # timed out: treated as denied (the safe default)


class CommandKind(StrEnum):
    """Requests written by another process (TUI attach, CLI) that the engine obeys."""

    PAUSE = "pause"
    RESUME = "resume"
    STOP = "stop"


class Event(BaseModel):
    """One row of the append-only ``events`` table."""

    id: int
    ts: float
    kind: str
    mission_id: int | None = None
    unit_id: str | None = None
    payload: dict[str, Any] = Field(default_factory=dict)


class UnitSpec(BaseModel):
    """A work unit as the planner describes it (before it has a row)."""

    title: str
    description: str = ""
    files_hint: list[str] = Field(default_factory=list)
    acceptance_criteria: list[str] = Field(default_factory=list)
    priority: int = Field(3, ge=1, le=5)
    dependencies: list[str] = Field(default_factory=list)
    specialist: str = "general"
