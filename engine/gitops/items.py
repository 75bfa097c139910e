"""What the merge queue hands around: one queued change, and the outcome of one run."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol


@dataclass
class QueueItem:
    merge_id: int
    unit_id: str | None
    branch: str
    head_commit: str
    requires: list[str] = field(default_factory=list)  # commits a candidate needs first


@dataclass
class QueueOutcome:
    promoted: list[QueueItem] = field(default_factory=list)
    conflicts: list[tuple[QueueItem, list[str]]] = field(default_factory=list)
    failed: list[tuple[QueueItem, str]] = field(default_factory=list)
    verifications: int = 0
    discarded: int = 0  # speculative verifications cancelled: what they were built on failed
    green_before: str = ""
    green_after: str = ""


class ChangeStage(StrEnum):
    """Where the queue has a unit's change (the ledger moves the unit to match)."""

    QUEUED = "queued"
    MERGING = "merging"
    VERIFYING = "verifying"
    MERGED = "merged"  # in mc/green
    FIXUP = "fixup"  # conflicted or broke the verification: needs a repair


class UnitSink(Protocol):
    """Who hears about the units behind the queue's changes (``engine.ledger.UnitLedger``)."""

    def change_moved(self, unit_id: str | None, stage: ChangeStage, reason: str | None = None,
                     **fields: Any) -> None: ...

    def requeue_orphans(self, mission_id: int, active_merge_statuses: tuple[str, ...]) -> list[str]:
        ...


class NoUnits:
    """A queue without units (benchmarks, bare merges): nothing to report to."""

    def change_moved(self, unit_id: str | None, stage: ChangeStage, reason: str | None = None,
                     **fields: Any) -> None:
        return None

    def requeue_orphans(self, mission_id: int, active_merge_statuses: tuple[str, ...]) -> list[str]:
        return []
