"""What the page shows, read from a mission store: a full snapshot, then small updates.

A snapshot is the state of one mission (plan tree, workers and their log tails, merge queue,
approvals, cost series against the budget, event tail). An update is what a batch of new
events changed: the events themselves (agent chatter folded into log lines) and the rows
they name, re-read by id. Everything is plain JSON; nothing secret is read (the store
redacts secrets on write; mission config, verification output and agent env are not sent).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from engine.models import Event
from engine.resilience.liveness import LOST_AFTER_S, is_lost, resume_command
from engine.store import Store
from engine.views import agent_line, event_detail, event_from_row, touched

EVENT_TAIL = 300
AGENT_TAIL = 60
COST_POINTS = 400
DIFF_MAX_CHARS = 20_000

# columns sent per table (never config_json, verification output, pids, session ids)
COLUMNS: dict[str, tuple[str, ...]] = {
    "epochs": ("id", "number", "status", "plan_score", "started_at", "ended_at"),
    "units": ("id", "epoch_id", "parent_id", "title", "specialist", "status", "reason",
              "is_leaf", "attempt_count", "review_score", "cost_usd", "dependencies",
              "created_at", "updated_at"),
    "attempts": ("id", "unit_id", "role", "backend", "model", "slot", "status", "cost_usd",
                 "turns", "failure_reason", "started_at", "ended_at", "host"),
    "merges": ("id", "unit_id", "batch_id", "branch", "status", "reason", "conflict_paths",
               "created_at", "updated_at"),
    "verifications": ("id", "batch_id", "status", "exit_code", "duration_s", "accepted", "note",
                      "started_at", "ended_at"),
    "approvals": ("id", "unit_id", "gate", "status", "title", "diffstat", "diff", "created_at",
                  "expires_at", "decided_at", "decided_by"),
}
TABLES = tuple(COLUMNS)
MISSION_COLUMNS = ("id", "objective", "status", "outcome", "started_at", "ended_at",
                   "heartbeat_at", "total_cost_usd", "active_s", "base_branch")


def _pick(table: str, row: dict[str, Any]) -> dict[str, Any]:
    out = {k: row.get(k) for k in COLUMNS[table]}
    if table == "approvals" and isinstance(out.get("diff"), str) and len(out["diff"]) > DIFF_MAX_CHARS:
        out["diff"] = out["diff"][:DIFF_MAX_CHARS] + "\n… (diff cut; see `mc` or git)"
    return out


def mission_view(store: Store, mission_id: int) -> dict[str, Any] | None:
    """The mission row (selected columns) with ``budget_usd`` from its recorded config."""
    rows = store.query("SELECT * FROM missions WHERE id = ?", (mission_id,))
    if not rows:
        return None
    row = rows[0]
    view = {k: row.get(k) for k in MISSION_COLUMNS}
    budget = None
    try:
        budget = json.loads(row.get("config_json") or "{}")["scheduler"]["budget"]["max_per_run_usd"]
    except (KeyError, TypeError, ValueError):
        pass
    view["budget_usd"] = budget
    # a live row whose heartbeat stopped: its engine died (engine/resilience/liveness.py)
    view["lost"] = is_lost(row, time.time())
    view["lost_after_s"] = LOST_AFTER_S
    view["resume"] = resume_command()
    return view


def event_view(event: Event) -> dict[str, Any]:
    """An event for the log pane: id, ts, kind, unit and a one-line detail."""
    detail = event_detail(event)
    if len(detail) > 300:
        detail = detail[:299] + "…"
    return {"id": event.id, "ts": event.ts, "kind": event.kind, "unit": event.unit_id,
            "detail": detail}


def _agent_entry(event: Event) -> dict[str, Any] | None:
    slot = event.payload.get("slot")
    if slot is None:
        return None
    return {"slot": slot, "unit": event.unit_id, "line": agent_line(event.payload, width=200)}


def latest_mission_id(store: Store) -> int | None:
    latest = store.latest_mission()
    return int(latest["id"]) if latest else None


def snapshot(store: Store, mission_id: int | None, upto_event: int) -> dict[str, Any]:
    """The whole view of ``mission_id`` (``None``: no mission yet), events up to ``upto_event``."""
    snap: dict[str, Any] = {"mission": None, "last_event_id": upto_event,
                            "rows": {t: [] for t in TABLES}, "events": [], "agent": [],
                            "costs": []}
    if mission_id is None:
        return snap
    snap["mission"] = mission_view(store, mission_id)
    for table in TABLES:
        snap["rows"][table] = [_pick(table, r) for r in
                               store.rows(table, "mission_id = ?", (mission_id,))]
    tail = store.query(
        "SELECT id, ts, kind, mission_id, unit_id, payload FROM events WHERE mission_id = ? "
        "AND id <= ? AND kind != 'agent.event' ORDER BY id DESC LIMIT ?",
        (mission_id, upto_event, EVENT_TAIL))
    snap["events"] = [event_view(event_from_row(r)) for r in reversed(tail)]
    agent = store.query(
        "SELECT id, ts, kind, mission_id, unit_id, payload FROM events WHERE mission_id = ? "
        "AND id <= ? AND kind = 'agent.event' ORDER BY id DESC LIMIT ?",
        (mission_id, upto_event, AGENT_TAIL * 8))
    snap["agent"] = [e for e in (_agent_entry(event_from_row(r)) for r in reversed(agent)) if e]
    snap["costs"] = cost_points(store, mission_id)
    return snap


def cost_points(store: Store, mission_id: int) -> list[list[float]]:
    """Cumulative spend ``[[ts, usd], ...]``, at most :data:`COST_POINTS` (evenly thinned)."""
    rows = store.query("SELECT ts, usd FROM costs WHERE mission_id = ? ORDER BY id", (mission_id,))
    points: list[list[float]] = []
    total = 0.0
    for row in rows:
        total += float(row["usd"])
        points.append([float(row["ts"]), round(total, 6)])
    if len(points) > COST_POINTS:
        step = len(points) / COST_POINTS
        points = [points[int(i * step)] for i in range(COST_POINTS - 1)] + [points[-1]]
    return points


@dataclass
class Batch:
    """New events of one mission, and the ids of the rows they touched."""

    mission_id: int | None
    events: list[Event] = field(default_factory=list)
    dirty: dict[str, set[Any]] = field(default_factory=lambda: {t: set() for t in TABLES})
    mission_dirty: bool = False

    def add(self, event: Event) -> None:
        self.events.append(event)
        if event.kind == "agent.event":
            return  # sent as log lines; the attempt rows follow with its other events
        touch = touched(event)  # engine/views.py, shared with the TUI
        for table, row_id in touch.rows:
            self.dirty[table].add(row_id)
        self.mission_dirty = self.mission_dirty or touch.mission


def update(store: Store, batch: Batch) -> dict[str, Any]:
    """The JSON update for ``batch``: its events, agent lines, the touched rows (re-read by id)
    and ``cost_add``, the spend of its ``cost`` events as ``[[ts, usd], ...]`` (the page adds
    them to the cumulative series it got with the snapshot)."""
    out: dict[str, Any] = {"mission_id": batch.mission_id, "sent_at": time.time(),
                           "last_event_id": batch.events[-1].id if batch.events else 0,
                           "events": [], "agent": [], "rows": {}}
    cost_add: list[list[float]] = []
    for event in batch.events:
        if event.kind == "agent.event":
            entry = _agent_entry(event)
            if entry:
                out["agent"].append(entry)
            continue
        out["events"].append(event_view(event))
        if event.kind == "cost":
            cost_add.append([event.ts, float(event.payload.get("usd") or 0)])
    if cost_add:
        out["cost_add"] = cost_add
    if batch.mission_id is None:
        return out
    for table, ids in batch.dirty.items():
        if not ids:
            continue
        id_list = list(ids)
        rows: list[dict[str, Any]] = []
        for start in range(0, len(id_list), 500):
            chunk = id_list[start:start + 500]
            marks = ",".join("?" * len(chunk))
            rows += [_pick(table, r) for r in store.rows(table, f"id IN ({marks})", chunk)
                     if r.get("mission_id") == batch.mission_id]
        if rows:
            out["rows"][table] = rows
    if batch.mission_dirty:
        out["mission"] = mission_view(store, batch.mission_id)
    return out
