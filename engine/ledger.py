"""The unit ledger: the one writer of unit status and of the counters decisions read.

Every unit transition goes through :meth:`UnitLedger.move` (row + ``unit.status`` event in
one transaction, checked against ``UNIT_TRANSITIONS``); the counters the engine decides on
(``review_rejections``: reviews that rejected the unit; ``fixup_rounds``: fixup rounds that
reached a decision; ``resume_point``: where a unit cut short by a crash picks up) are
columns updated in the same transaction as the event that changes them, so no decision
has to recount JSON event payloads. :class:`Unit` is the typed view of a row.

The merge queue (``engine.gitops``) knows nothing of unit statuses: it reports where a
change is (:class:`~engine.gitops.items.ChangeStage`) to a sink, and :class:`UnitLedger`
is that sink.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, ConfigDict

from engine.gitops.items import ChangeStage
from engine.models import UNIT_TRANSITIONS, Event, UnitStatus
from engine.store import Store


class Unit(BaseModel):
    """One row of ``units`` (a node of the plan tree; leaves are the work)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str
    mission_id: int
    epoch_id: int | None = None
    parent_id: str | None = None
    title: str
    description: str = ""
    files_hint: list[str] = []
    acceptance_criteria: list[str] = []
    dependencies: list[str] = []
    specialist: str = "general"
    priority: int = 3
    is_leaf: bool = True
    uncertain: bool = False  # the planner is unsure of the approach (speculation branches)
    status: UnitStatus
    reason: str | None = None
    branch: str | None = None
    base_commit: str | None = None
    head_commit: str | None = None
    attempt_count: int = 0
    review_score: float | None = None
    review_feedback: str | None = None
    reward: float | None = None
    cost_usd: float = 0.0
    resume_point: str | None = None
    review_rejections: int = 0
    fixup_rounds: int = 0
    tools: list[dict[str, Any]] = []
    created_at: float = 0.0
    updated_at: float = 0.0


class UnitLedger:
    """Unit transitions and counters over one store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def get(self, unit_id: str) -> Unit | None:
        row = self.store.get("units", unit_id)
        return Unit(**row) if row else None

    def units(self, mission_id: int) -> list[Unit]:
        return [Unit(**row) for row in self.store.units(mission_id)]

    # ------------------------------------------------------------------ transitions
    def move(self, unit_id: str, status: UnitStatus, *, reason: str | None = None,
             **fields: Any) -> Event:
        """Move a unit (raises ``IllegalTransition`` for a move the model forbids)."""
        return self.store.set_status("units", unit_id, status, reason=reason, **fields)

    def move_if_legal(self, unit_id: str | None, status: UnitStatus, reason: str | None = None,
                      **fields: Any) -> None:
        """Move a unit when the transition is legal; else only record ``fields`` (a
        re-verified unit stays ``verifying``, a merged one stays merged)."""
        if unit_id is None:
            return
        with self.store.transaction():
            row = self.store.get("units", unit_id)
            if row is None:
                return
            current = UnitStatus(row["status"])
            if current == status or status not in UNIT_TRANSITIONS[current]:
                if fields:
                    self.store.update("units", unit_id, **fields)
                return
            self.move(unit_id, status, reason=reason, **fields)

    # the merge queue's sink --------------------------------------------------------
    def change_moved(self, unit_id: str | None, stage: ChangeStage, reason: str | None = None,
                     **fields: Any) -> None:
        """The queue moved a unit's change to ``stage`` (its unit follows, when legal)."""
        self.move_if_legal(unit_id, UnitStatus(stage.value), reason, **fields)

    def requeue_orphans(self, mission_id: int, active_merge_statuses: tuple[str, ...]) -> list[str]:
        """Units left merging/verifying without an active merge row go back to queued."""
        rows = self.store.query(
            "SELECT u.id, u.status FROM units u WHERE u.mission_id = ? AND u.status IN (?, ?)"
            " AND NOT EXISTS (SELECT 1 FROM merges m WHERE m.unit_id = u.id AND m.status IN "
            f"({', '.join('?' for _ in active_merge_statuses)}))",
            (mission_id, UnitStatus.MERGING.value, UnitStatus.VERIFYING.value,
             *active_merge_statuses),
        )
        notes = []
        for row in rows:
            self.move_if_legal(row["id"], UnitStatus.QUEUED, "requeued after an interrupted run")
            notes.append(f"unit {row['id']} was {row['status']}; back to queued")
        return notes

    # ------------------------------------------------------------------ counters
    def record_review(self, unit_id: str, *, mission_id: int, passed: bool,
                      **payload: Any) -> int:
        """The ``review.scored`` event and the rejection count, in one transaction.
        Returns the unit's rejections so far (this one included)."""
        with self.store.transaction():
            self.store.append_event("review.scored", mission_id=mission_id, unit_id=unit_id,
                                    passed=passed, **payload)
            if not passed:
                self.store.conn.execute(
                    "UPDATE units SET review_rejections = review_rejections + 1, updated_at = ? "
                    "WHERE id = ?", (time.time(), unit_id))
            row = self.store.get("units", unit_id)
        return int(row["review_rejections"]) if row else 0

    def record_fixup_decision(self, unit_id: str, *, mission_id: int, **payload: Any) -> int:
        """The ``fixup.winner`` event (with or without a winner) and the round count, in one
        transaction. A round cut short by a crash has no decision and does not count."""
        with self.store.transaction():
            self.store.append_event("fixup.winner", mission_id=mission_id, unit_id=unit_id,
                                    **payload)
            self.store.conn.execute(
                "UPDATE units SET fixup_rounds = fixup_rounds + 1 WHERE id = ?", (unit_id,))
            row = self.store.get("units", unit_id)
        return int(row["fixup_rounds"]) if row else 0

    def review_rejections(self, unit_id: str) -> int:
        row = self.store.get("units", unit_id)
        return int(row["review_rejections"]) if row else 0

    def fixup_rounds(self, unit_id: str) -> int:
        row = self.store.get("units", unit_id)
        return int(row["fixup_rounds"]) if row else 0
