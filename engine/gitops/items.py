"""What the merge queue hands around: one queued change, and the outcome of one run."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class QueueItem:
    merge_id: int
    unit_id: str | None
    branch: str
    head_commit: str


@dataclass
class QueueOutcome:
    promoted: list[QueueItem] = field(default_factory=list)
    conflicts: list[tuple[QueueItem, list[str]]] = field(default_factory=list)
    failed: list[tuple[QueueItem, str]] = field(default_factory=list)
    verifications: int = 0
    green_before: str = ""
    green_after: str = ""
