"""The app's in-memory view of one mission, fed by store events (no Textual here).

Events are *coalesced*: :class:`PendingChanges` only records which rows became dirty
(cheap, at any event rate); :meth:`MissionState.apply` runs on the UI clock, re-reads
those rows by id and returns a :class:`Changes` describing what the panes must redraw.
Everything kept in memory is bounded (event log, per-slot agent logs, cost series).
"""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from engine.models import Event
from engine.resilience.liveness import LIVE_STATUSES
from engine.store import Store
from engine.views import agent_line, event_from_row, touched

HEARTBEAT_REREAD_S = 5.0  # how often a live mission's row is re-read for its heartbeat

EVENT_LOG_MAX = 2000
AGENT_LOG_MAX = 500
COST_POINTS_MAX = 20_000

TABLES = ("epochs", "units", "attempts", "merges", "verifications", "approvals")


@dataclass
class PendingChanges:
    """What arrived since the last UI tick: dirty ids per table and bounded raw events."""

    dirty: dict[str, set[Any]] = field(default_factory=lambda: {t: set() for t in TABLES})
    mission_dirty: bool = False
    costs_dirty: bool = False
    new_mission_id: int | None = None
    log_events: deque[Event] = field(default_factory=lambda: deque(maxlen=EVENT_LOG_MAX))
    agent_events: deque[Event] = field(default_factory=lambda: deque(maxlen=AGENT_LOG_MAX * 8))
    fixup_events: list[Event] = field(default_factory=list)
    speculation_events: list[Event] = field(default_factory=list)
    projection: dict[str, Any] | None = None
    count: int = 0
    last_id: int = 0
    follow_newest: bool = True

    def add(self, event: Event, mission_id: int | None) -> None:
        """Record one event (O(1)); events of other missions only matter if they create one."""
        self.count += 1
        self.last_id = max(self.last_id, event.id)
        kind = event.kind
        if kind == "mission.created" and self.follow_newest:
            new_id = event.payload.get("id", event.mission_id)
            if new_id is not None and new_id != mission_id:
                self.new_mission_id = int(new_id)
        if mission_id is not None and event.mission_id not in (None, mission_id):
            return
        touch = touched(event)  # the rows it names (engine/views.py, shared with mc live)
        for table, row_id in touch.rows:
            self.dirty[table].add(row_id)
        self.mission_dirty = self.mission_dirty or touch.mission
        if kind == "agent.event":
            self.agent_events.append(event)
            return
        self.log_events.append(event)
        if kind == "cost":
            self.costs_dirty = True
        elif kind.startswith("fixup."):
            self.fixup_events.append(event)
        elif kind.startswith("speculation."):
            self.speculation_events.append(event)
        elif kind == "budget.projection":
            self.projection = dict(event.payload)


@dataclass
class Changes:
    """What one UI tick changed: ids per table, new log lines, and flags."""

    reloaded: bool = False
    mission: bool = False
    rows: dict[str, set[Any]] = field(default_factory=lambda: {t: set() for t in TABLES})
    removed: dict[str, set[Any]] = field(default_factory=lambda: {t: set() for t in TABLES})
    costs: bool = False
    fixups: bool = False
    log_events: list[Event] = field(default_factory=list)
    agent_lines: dict[int, list[str]] = field(default_factory=dict)
    events: int = 0

    @property
    def empty(self) -> bool:
        return not (
            self.reloaded or self.mission or self.costs or self.fixups or self.log_events
            or self.agent_lines or any(self.rows.values())
        )


class MissionState:
    """Rows of one mission as last read from the store."""

    def __init__(self, store: Store, mission_id: int | None) -> None:
        self.store = store
        self.events_applied = 0  # events applied since start (kept across mission changes)
        self._reset(mission_id)

    def _reset(self, mission_id: int | None) -> None:
        self.mission_id = mission_id
        self.mission: dict[str, Any] | None = None
        self.epochs: dict[int, dict[str, Any]] = {}
        self.units: dict[str, dict[str, Any]] = {}
        self.attempts: dict[int, dict[str, Any]] = {}
        self.merges: dict[int, dict[str, Any]] = {}
        self.verifications: dict[int, dict[str, Any]] = {}
        self.approvals: dict[int, dict[str, Any]] = {}
        self.slot_attempt: dict[int, int] = {}
        self.last_output: dict[int, float] = {}  # attempt id -> ts of its last stream event
        self.breakers: list[dict[str, Any]] = []  # the mission's circuit breakers, worst first
        self._mission_read_at = time.monotonic()
        self.costs: deque[tuple[float, float, str, str]] = deque(maxlen=COST_POINTS_MAX)
        self.cost_total = 0.0
        self._last_cost_id = 0
        self.fixups: dict[tuple[str, int, int], dict[str, Any]] = {}
        # speculation branches: unit id -> (attempt, {branch number: entry}), the latest attempt
        self.branches: dict[str, tuple[int, dict[int, dict[str, Any]]]] = {}
        self.projection: dict[str, Any] | None = None
        self.event_log: deque[Event] = deque(maxlen=EVENT_LOG_MAX)
        self.agent_log: dict[int, deque[str]] = {}

    def rows_of(self, table: str) -> dict[Any, dict[str, Any]]:
        """The cached rows of one of :data:`TABLES`, by id."""
        tables: dict[str, dict[Any, dict[str, Any]]] = {
            "epochs": self.epochs, "units": self.units, "attempts": self.attempts,
            "merges": self.merges, "verifications": self.verifications, "approvals": self.approvals,
        }
        return tables[table]

    # ------------------------------------------------------------------ loading
    def load(self, upto_event: int | None = None) -> Changes:
        """Read everything about the mission (start-up, or when the followed mission changes).

        ``upto_event``: read the event tails only up to this id (the reader delivers later ones).
        """
        store = self.store
        if self.mission_id is None:
            latest = store.latest_mission()
            self.mission_id = latest["id"] if latest else None
        mid = self.mission_id
        self._reset(mid)
        changes = Changes(reloaded=True, mission=True, costs=True, fixups=True)
        if mid is None:
            return changes
        self.mission = store.get("missions", mid)
        where = "mission_id = ?"
        for table in TABLES:
            rows = store.rows(table, where, (mid,))
            target = self.rows_of(table)
            for row in rows:
                target[row["id"]] = row
            changes.rows[table] = set(target)
        for attempt in self.attempts.values():
            self._note_slot(attempt)
        self._read_costs()
        self.breakers = _breaker_rows(store, mid)
        upto = upto_event if upto_event is not None else 2**62
        tail = store.query(
            "SELECT id, ts, kind, mission_id, unit_id, payload FROM events "
            "WHERE mission_id = ? AND id <= ? AND kind != 'agent.event' ORDER BY id DESC LIMIT ?",
            (mid, upto, EVENT_LOG_MAX),
        )
        for row in reversed(tail):
            event = event_from_row(row)
            self.event_log.append(event)
            if event.kind.startswith("fixup."):
                self._apply_fixup(event)
            elif event.kind == "budget.projection":
                self.projection = dict(event.payload)
        changes.log_events = list(self.event_log)
        for row in store.query(  # all of them: the branches of old units are in the plan tree
            "SELECT id, ts, kind, mission_id, unit_id, payload FROM events WHERE mission_id = ? "
            "AND id <= ? AND kind LIKE 'speculation.%' ORDER BY id", (mid, upto),
        ):
            self._apply_speculation(event_from_row(row))
        agent_rows = store.query(
            "SELECT id, ts, kind, mission_id, unit_id, payload FROM events "
            "WHERE mission_id = ? AND id <= ? AND kind = 'agent.event' ORDER BY id DESC LIMIT ?",
            (mid, upto, AGENT_LOG_MAX * 8),
        )
        for row in reversed(agent_rows):
            self._add_agent_line(event_from_row(row), changes)
        return changes

    def last_event_id(self) -> int:
        return self.store.last_event_id()

    # ------------------------------------------------------------------ applying events
    def apply(self, pending: PendingChanges) -> Changes:
        """Re-read the rows ``pending`` marks dirty; return what changed."""
        if pending.new_mission_id is not None and pending.new_mission_id != self.mission_id:
            self.mission_id = pending.new_mission_id
            changes = self.load()
            changes.events = pending.count
            self.events_applied += pending.count
            return changes
        changes = Changes(events=pending.count)
        self.events_applied += pending.count
        if self.mission_id is None:
            return changes
        store = self.store
        for table, ids in pending.dirty.items():
            if not ids:
                continue
            target = self.rows_of(table)
            id_list = list(ids)
            for start in range(0, len(id_list), 500):
                chunk = id_list[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for row in store.rows(table, f"id IN ({marks})", chunk):
                    if row.get("mission_id") not in (None, self.mission_id):
                        continue
                    if target.get(row["id"]) != row:
                        target[row["id"]] = row
                        changes.rows[table].add(row["id"])
                        if table == "attempts":
                            self._note_slot(row)
        if pending.mission_dirty:
            self.mission = store.get("missions", self.mission_id)
            self._mission_read_at = time.monotonic()
            changes.mission = True
        elif self._heartbeat_due():  # heartbeats write no event: re-read to see one stop
            row = store.get("missions", self.mission_id)
            self._mission_read_at = time.monotonic()
            if row != self.mission:
                self.mission, changes.mission = row, True
        if pending.costs_dirty:
            changes.costs = self._read_costs()
        for event in pending.fixup_events:
            self._apply_fixup(event)
            changes.fixups = True
        for event in pending.speculation_events:
            unit_id = self._apply_speculation(event)
            if unit_id in self.units:  # the plan tree redraws the unit with its branches
                changes.rows["units"].add(unit_id)
        if pending.projection is not None:
            self.projection = pending.projection
            changes.costs = True
        if any(e.kind.startswith("degradation.") for e in pending.log_events):
            self.breakers = _breaker_rows(store, self.mission_id)
            changes.mission = True  # the status bar shows them
        for event in pending.log_events:
            self.event_log.append(event)
        changes.log_events = list(pending.log_events)
        for event in pending.agent_events:
            self._add_agent_line(event, changes)
        return changes

    # ------------------------------------------------------------------ helpers
    def _note_slot(self, attempt: dict[str, Any]) -> None:
        slot = attempt.get("slot")
        if slot is None:
            return
        current = self.slot_attempt.get(slot)
        if current is None or attempt["id"] >= current:
            self.slot_attempt[slot] = attempt["id"]

    def _read_costs(self) -> bool:
        rows = self.store.query(
            "SELECT id, ts, usd, model, role FROM costs WHERE mission_id = ? AND id > ? ORDER BY id",
            (self.mission_id, self._last_cost_id),
        )
        for row in rows:
            self._last_cost_id = row["id"]
            self.costs.append((row["ts"], row["usd"], row["model"] or "?", row["role"]))
            self.cost_total += row["usd"]
        return bool(rows)

    def _apply_fixup(self, event: Event) -> None:
        """Fixup candidates from ``fixup.started/candidate/winner`` (payloads of engine/fixup.py):
        one entry per (unit, round, candidate), running until scored."""
        p = event.payload
        unit = str(event.unit_id or p.get("unit") or "?")
        rnd = int(p.get("round") or 1)
        if event.kind == "fixup.started":
            for n in range(1, int(p.get("candidates") or 0) + 1):
                self.fixups.setdefault((unit, rnd, n), {
                    "unit": unit, "round": rnd, "candidate": n, "state": "running"})
            return
        cand = p.get("candidate")
        if event.kind == "fixup.winner":
            for (u, r, _), entry in self.fixups.items():
                if u == unit and r == rnd and entry["state"] != "running":
                    entry["state"] = "lost"
                elif u == unit and r == rnd:
                    entry["state"] = "failed"
            if cand is None:
                return  # no winner: every candidate lost (reason in the event log)
        if cand is None:
            return
        key = (unit, rnd, int(cand))
        entry = self.fixups.setdefault(key, {"unit": unit, "round": rnd, "candidate": int(cand)})
        for field_name in ("approach", "verified", "tests_passed", "tests_failed", "lint_errors",
                           "diff_lines", "score"):
            if p.get(field_name) is not None:
                entry[field_name] = p[field_name]
        if event.kind == "fixup.winner":
            entry["state"] = "winner"
        else:
            entry["state"] = "scored" if entry.get("verified") else "failed"

    def _apply_speculation(self, event: Event) -> str | None:
        """Branches of a unit from ``speculation.*`` events (payloads of engine/speculation.py):
        running until scored (``verified`` / ``failed`` / ``no work``), then ``winner`` or
        ``lost``. Only the unit's latest attempt is kept. Returns the unit id."""
        p = event.payload
        unit = event.unit_id
        attempt = int(p.get("attempt") or 0)
        if unit is None:
            return None
        if event.kind == "speculation.started":
            entries = {n: {"branch": n, "approach": approach, "state": "running", "cost_usd": 0.0,
                           "selection": p.get("selection")}
                       for n, approach in enumerate(p.get("approaches") or [], start=1)}
            self.branches[unit] = (attempt, entries)
            return unit
        known_attempt, entries = self.branches.get(unit, (attempt, {}))
        if known_attempt != attempt:
            return unit  # an older attempt's event (replayed)
        self.branches[unit] = (attempt, entries)
        if event.kind == "speculation.branch":
            entry = entries.setdefault(int(p.get("branch") or 0), {"branch": p.get("branch")})
            for name in ("approach", "verified", "tests_passed", "tests_failed", "diff_lines",
                         "cost_usd", "problem", "error"):
                if p.get(name) is not None:
                    entry[name] = p[name]
            entry["state"] = (
                "no work" if not p.get("head") else "forbidden" if p.get("problem")
                else "verified" if p.get("verified")
                else "done" if entry.get("selection") == "review" else "tests failed")
        elif event.kind == "speculation.reviewed":
            entries.setdefault(int(p.get("branch") or 0), {})["review_score"] = p.get("score")
        elif event.kind == "speculation.winner":
            for number, entry in entries.items():
                entry["state"] = "winner" if number == p.get("branch") else "lost"
        return unit

    def _heartbeat_due(self) -> bool:
        return (self.mission is not None and self.mission.get("status") in LIVE_STATUSES
                and time.monotonic() - self._mission_read_at >= HEARTBEAT_REREAD_S)

    def _add_agent_line(self, event: Event, changes: Changes) -> None:
        attempt_id = event.payload.get("attempt_id")
        if attempt_id is not None:  # the silence shown in the workers pane starts here
            self.last_output[attempt_id] = max(self.last_output.get(attempt_id, 0.0), event.ts)
        slot = event.payload.get("slot")
        if slot is None:
            attempt = self.attempts.get(event.payload.get("attempt_id", -1))
            slot = attempt.get("slot") if attempt else None
        if slot is None:
            return
        line = agent_line(event.payload)
        self.agent_log.setdefault(slot, deque(maxlen=AGENT_LOG_MAX)).append(line)
        changes.agent_lines.setdefault(slot, []).append(line)

    # ------------------------------------------------------------------ queries for panes
    def current_epoch(self) -> dict[str, Any] | None:
        if not self.epochs:
            return None
        return max(self.epochs.values(), key=lambda e: e["number"])

    def unit_context(self, unit_id: str) -> list[dict[str, Any]]:
        """The discoveries, gotchas and conventions the unit's workers reported
        (``unit.context`` events: ``kind``, ``text``, ``paths``), read when shown."""
        rows = self.store.query(
            "SELECT payload FROM events WHERE mission_id = ? AND kind = 'unit.context' "
            "AND unit_id = ? ORDER BY id", (self.mission_id, unit_id))
        seen: dict[tuple[str, str], dict[str, Any]] = {}
        for row in rows:
            for item in json.loads(row["payload"] or "{}").get("items") or []:
                seen.setdefault((str(item.get("kind")), str(item.get("text"))), item)
        return list(seen.values())

    def unit_attempts(self, unit_id: str) -> list[dict[str, Any]]:
        return sorted(
            (a for a in self.attempts.values() if a.get("unit_id") == unit_id), key=lambda a: a["id"]
        )

    def pending_approvals(self) -> list[dict[str, Any]]:
        return sorted(
            (a for a in self.approvals.values() if a["status"] == "pending"), key=lambda a: a["id"]
        )

    def verification_for(self, merge: dict[str, Any]) -> dict[str, Any] | None:
        batch = merge.get("batch_id")
        if not batch:
            return None
        found = [v for v in self.verifications.values() if v.get("batch_id") == batch]
        return max(found, key=lambda v: v["id"]) if found else None


def _breaker_rows(store: Store, mission_id: int) -> list[dict[str, Any]]:
    """``engine.resilience.board.breaker_rows``, imported on first use: the board imports
    ``engine.agents`` (every agent backend), which the first frame does not need; without a
    bytecode cache compiling them cost about 0.1 s of the time to it."""
    from engine.resilience.board import breaker_rows

    return breaker_rows(store, mission_id)
