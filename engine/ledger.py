"""The unit ledger: the one writer of unit status and of the counters decisions read.

Every unit transition goes through :meth:`UnitLedger.move` (row + ``unit.status`` event in
one transaction, checked against ``UNIT_TRANSITIONS``); the counters the engine decides on
(``review_rejections``: reviews that rejected the unit; ``fixup_rounds``: fixup rounds that
reached a decision; ``resume_point``: where a unit cut short by a crash picks up;
``winner_*``: a fixup round's winner not yet delivered to the queue) are columns updated in
the same transaction as the event that changes them, so no decision has to recount JSON
event payloads. :class:`Unit` is the typed view of a row.

:class:`EpochLedger` does the same for an epoch's decisions: the feedback phase's figures
(which a resumed mission's cost and stall trackers are rebuilt from) and the objective
check (where a resumed mission starts), each with its event in one transaction.

The merge queue (``engine.gitops``) knows nothing of unit statuses: it reports where a
change is (:class:`~engine.gitops.items.ChangeStage`) to a sink, and :class:`UnitLedger`
is that sink.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from engine import clock
from engine.gitops.items import ChangeStage
from engine.models import UNIT_TRANSITIONS, EpochStatus, Event, UnitStatus
from engine.store import Store

NO_WINNER: dict[str, Any] = {"winner_round": None, "winner_candidate": None,
                             "winner_approach": None, "winner_head": None}


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
    stacked_on: dict[str, Any] | None = None  # engine/stacking.py: {"green", "base", "heads"}
    winner_round: int | None = None
    winner_candidate: int | None = None
    winner_approach: str | None = None
    winner_head: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0

    @property
    def row(self) -> dict[str, Any]:
        """The unit as a plain dict (what plugins, prompts and gates read)."""
        return self.model_dump()


class FixupWinner(BaseModel):
    """A fixup round's winner, decided but not yet delivered to the merge queue."""

    round: int
    candidate: int
    approach: str
    head: str


class UnitLedger:
    """Unit transitions and counters over one store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        # unit id -> (the row as stored, the Unit built from it): a row read again unchanged
        # is not decoded and validated again (the engine reads every unit of the mission
        # several times per scheduling step; building them took about a fifth of the event
        # loop's time in the fleet benchmark, docs/scaling.md)
        self._built: dict[str, tuple[tuple[Any, ...], Unit]] = {}

    def _from_rows(self, where: str, params: Any, order: str = "created_at, id") -> list[Unit]:
        """The units of ``SELECT * FROM units WHERE where ORDER BY order``. A memoised Unit
        is returned only for a byte-identical row (every column compared): always what
        ``Unit(**row)`` would build. Units are frozen; their list and dict fields are shared
        between callers and must not be mutated (none is)."""
        names, raws = self.store.raw_rows("units", where, params, order=order)
        at = names.index("id")
        out: list[Unit] = []
        built = self._built
        for raw in raws:
            hit = built.get(raw[at])
            if hit is None or hit[0] != raw:
                hit = (raw, Unit(**self.store.decode("units", names, raw)))
                built[raw[at]] = hit
            out.append(hit[1])
        return out

    def get(self, unit_id: str) -> Unit | None:
        found = self._from_rows("id = ?", (unit_id,), order="id")
        return found[0] if found else None

    def require(self, unit_id: str) -> Unit:
        """The unit ``unit_id`` (``KeyError`` when there is no such row)."""
        unit = self.get(unit_id)
        if unit is None:
            raise KeyError(f"no unit {unit_id}")
        return unit

    def units(self, mission_id: int) -> list[Unit]:
        """The mission's units, oldest first."""
        return self._from_rows("mission_id = ?", (mission_id,))

    def epoch_units(self, epoch_id: int) -> list[Unit]:
        """The epoch's units (its plan tree), oldest first."""
        return self._from_rows("epoch_id = ?", (epoch_id,))

    # ------------------------------------------------------------------ transitions
    def move(self, unit_id: str, status: UnitStatus, *, reason: str | None = None,
             **fields: Any) -> Event:
        """Move a unit (raises ``IllegalTransition`` for a move the model forbids). Any
        move settles a pending fixup winner (delivered, denied or overtaken)."""
        return self.store.set_status("units", unit_id, status, reason=reason,
                                     **{**NO_WINNER, **fields})

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
                    "WHERE id = ?", (clock.now(), unit_id))
            row = self.store.get("units", unit_id)
        return int(row["review_rejections"]) if row else 0

    def record_fixup_decision(self, unit_id: str, *, mission_id: int, **payload: Any) -> int:
        """The ``fixup.winner`` event (with or without a winner), the round count and the
        winner to deliver (``round``, ``candidate``, ``approach``, ``head`` of ``payload``), in
        one transaction. A round cut short by a crash has no decision and does not count."""
        winner = NO_WINNER
        if payload.get("head") and payload.get("candidate"):
            winner = {"winner_round": payload.get("round"),
                      "winner_candidate": payload["candidate"],
                      "winner_approach": payload.get("approach") or "",
                      "winner_head": payload["head"]}
        with self.store.transaction():
            self.store.append_event("fixup.winner", mission_id=mission_id, unit_id=unit_id,
                                    **payload)
            self.store.conn.execute(
                "UPDATE units SET fixup_rounds = fixup_rounds + 1 WHERE id = ?", (unit_id,))
            self.store.update("units", unit_id, **winner)
            row = self.store.get("units", unit_id)
        return int(row["fixup_rounds"]) if row else 0

    def pending_winner(self, unit_id: str) -> FixupWinner | None:
        """The winner of a decided fixup round that never reached the queue, if any."""
        unit = self.get(unit_id)
        if unit is None or not unit.winner_head or not unit.winner_candidate:
            return None
        return FixupWinner(round=unit.winner_round or 0, candidate=unit.winner_candidate,
                           approach=unit.winner_approach or "", head=unit.winner_head)

    def review_rejections(self, unit_id: str) -> int:
        row = self.store.get("units", unit_id)
        return int(row["review_rejections"]) if row else 0

    def fixup_rounds(self, unit_id: str) -> int:
        row = self.store.get("units", unit_id)
        return int(row["fixup_rounds"]) if row else 0


class EpochDecisions(BaseModel):
    """What an epoch's feedback and objective phases decided (columns of ``epochs``)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: int
    number: int
    status: EpochStatus
    feedback_at: float | None = None  # None: the feedback phase never finished
    units_merged: int = 0
    units_failed: int = 0
    cost_usd: float = 0.0
    tests_passed: int | None = None
    tests_failed: int | None = None
    lint_errors: int | None = None
    objective_met: bool | None = None  # None: the objective was not checked after it
    objective_feedback: str | None = None
    objective_check: int | None = None


class EpochLedger:
    """An epoch's end and its decisions, each with its event in one transaction."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def get(self, epoch_id: int) -> EpochDecisions | None:
        row = self.store.get("epochs", epoch_id)
        return EpochDecisions(**_none_to_default(row)) if row else None

    def epochs(self, mission_id: int) -> list[EpochDecisions]:
        """The mission's epochs, in order."""
        return [EpochDecisions(**_none_to_default(row))
                for row in self.store.rows("epochs", "mission_id = ?", (mission_id,),
                                           order="number")]

    def record_feedback(self, epoch_id: int, *, mission_id: int, status: EpochStatus,
                        summary: str, merged: int, failed: int, cost: float,
                        tests_passed: int | None, tests_failed: int | None,
                        lint_errors: int | None, **payload: Any) -> None:
        """The ``epoch.feedback`` event, its figures as columns and the epoch's end
        (``status``, ``summary``), in one transaction. ``payload``: more of the event."""
        now = clock.now()
        with self.store.transaction():
            self.store.append_event(
                "epoch.feedback", mission_id=mission_id, epoch_id=epoch_id, merged=merged,
                failed=failed, cost=cost, tests_passed=tests_passed, tests_failed=tests_failed,
                lint_errors=lint_errors, **payload)
            self.store.set_status(
                "epochs", epoch_id, status, ended_at=now, summary=summary, feedback_at=now,
                units_merged=merged, units_failed=failed, cost_usd=cost,
                tests_passed=tests_passed, tests_failed=tests_failed, lint_errors=lint_errors)

    def record_objective(self, epoch_id: int, *, mission_id: int, met: bool, feedback: str,
                         check: int) -> None:
        """The ``objective.checked`` event and the decision on the epoch it judged, together."""
        with self.store.transaction():
            self.store.append_event("objective.checked", mission_id=mission_id, met=met,
                                    feedback=feedback, check=check, epoch_id=epoch_id)
            self.store.update("epochs", epoch_id, objective_met=int(met),
                              objective_feedback=feedback, objective_check=check)


def plan_children(units: list[Unit]) -> dict[str, list[str]]:
    """Parent id -> its children's ids: pass it to :func:`leaves_under` and
    :func:`leaf_dependencies` when calling them for many units (else each call builds it)."""
    children: dict[str, list[str]] = {}
    for u in units:
        if u.parent_id:
            children.setdefault(u.parent_id, []).append(u.id)
    return children


def leaves_under(unit_id: str, units: list[Unit],
                 children: dict[str, list[str]] | None = None) -> set[str]:
    """The leaf ids of the plan subtree rooted at ``unit_id`` (itself, when it is a leaf)."""
    if children is None:
        children = plan_children(units)
    out: set[str] = set()
    stack = [unit_id]
    while stack:
        current = stack.pop()
        kids = children.get(current)
        if kids:
            stack.extend(kids)
        else:
            out.add(current)
    return out


def leaf_dependencies(unit: Unit, units: list[Unit],
                      children: dict[str, list[str]] | None = None) -> set[str]:
    """The leaves ``unit`` waits for: its dependencies, an inner node expanded to its leaves
    (the planner already resolves them to leaves, inherited ones included)."""
    if children is None:
        children = plan_children(units)
    out: set[str] = set()
    for dep in unit.dependencies:
        out.update(leaves_under(dep, units, children))
    return out


def chains(units: list[Unit]) -> dict[str, set[str]]:
    """For each leaf, every leaf it waits for, directly or through others (its dependencies'
    dependencies, inner nodes expanded to their leaves). A cycle (the planner's bug) ends the
    walk rather than hanging it."""
    children = plan_children(units)
    direct = {u.id: leaf_dependencies(u, units, children) for u in units if u.is_leaf}
    memo: dict[str, set[str]] = {}

    def up(unit_id: str, seen: frozenset[str]) -> set[str]:
        if unit_id not in memo:
            out: set[str] = set()
            for dep in direct.get(unit_id, ()):
                if dep not in seen:
                    out |= {dep} | up(dep, seen | {dep})
            memo[unit_id] = out
        return memo[unit_id]

    return {unit_id: up(unit_id, frozenset({unit_id})) for unit_id in direct}


def _none_to_default(row: dict[str, Any]) -> dict[str, Any]:
    """NULL counters of an epoch that never reached its feedback read as their defaults."""
    return {k: v for k, v in row.items() if v is not None}
