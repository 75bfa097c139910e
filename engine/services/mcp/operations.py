"""What the MCP server does, free of the MCP SDK: read a registered project's store, act on it
through its commands and approvals tables, start a mission as a detached ``mc mission``.

Every function takes a :class:`ProjectStores` (the registry plus one open store per project)
and returns plain JSON-able dicts. Bad input raises :class:`OperationError` with a message for
the caller (unknown project, mission, unit, approval; a mission that is not running ...).

The operations live by job: ``stores.py`` (:class:`ProjectStores`, :class:`OperationError`),
reading and acting here, ``backlog.py`` and ``launch.py`` (:func:`start_mission`); every name
is importable from here.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from engine.models import ApprovalStatus, CommandKind, MissionStatus
from engine.registry import Project, RegistryError, mission_state
from engine.services.mcp.backlog import add_backlog_item, list_backlog
from engine.services.mcp.launch import START_TIMEOUT_S, mission_env, start_mission
from engine.services.mcp.stores import OperationError, ProjectStores
from engine.store import Store

__all__ = [
    "ACTIVE", "DECIDED_BY", "DEFAULT_DIFF_BYTES", "DEFAULT_EVENT_TAIL", "MAX_DIFF_BYTES",
    "MAX_EVENT_TAIL", "START_TIMEOUT_S", "OperationError", "ProjectStores", "add_backlog_item",
    "decide", "event_tail", "list_approvals", "list_backlog", "list_missions", "list_projects",
    "list_units", "mission_env", "mission_row", "mission_summary", "report", "send_command",
    "start_mission", "status", "unit_detail", "unit_diff",
]

ACTIVE = (MissionStatus.RUNNING.value, MissionStatus.PAUSED.value, MissionStatus.PENDING.value)
DEFAULT_DIFF_BYTES = 60_000
MAX_DIFF_BYTES = 400_000
DEFAULT_EVENT_TAIL = 100
MAX_EVENT_TAIL = 2_000
DECIDED_BY = "mcp"


# ---------------------------------------------------------------------------- reading
def list_projects(stores: ProjectStores) -> list[dict[str, Any]]:
    """Every registered project (and the default one) with its last mission, read live."""
    try:
        projects = stores.registry.projects()
    except RegistryError as exc:
        raise OperationError(str(exc)) from None
    found = [_project_dict(p, default=stores.default) for p in projects]
    if stores.default is not None and stores.default.name not in {p.name for p in projects}:
        found.insert(0, _project_dict(stores.default, default=stores.default, registered=False))
    return found


def _project_dict(project: Project, *, default: Project | None,
                  registered: bool = True) -> dict[str, Any]:
    last_id, last_status, _ = mission_state(project.store_path)
    return {
        "name": project.name, "default": default is not None and default.name == project.name,
        "registered": registered, "config_path": str(project.config_path),
        "target_path": str(project.target_path), "store_path": str(project.store_path),
        "last_mission_id": last_id if last_id is not None else project.last_mission_id,
        "last_status": last_status if last_status is not None else project.last_status,
    }


def mission_row(store: Store, project: Project, mission_id: int | None) -> dict[str, Any]:
    """The mission ``mission_id`` (default: the newest) or :class:`OperationError`."""
    if mission_id is None:
        row = store.latest_mission()
        if row is None:
            raise OperationError(f"project {project.name!r} has no missions yet")
        return row
    row = store.get("missions", mission_id)
    if row is None:
        known = [r["id"] for r in store.query("SELECT id FROM missions ORDER BY id DESC LIMIT 10")]
        raise OperationError(f"mission {mission_id} does not exist in project {project.name!r} "
                             f"(latest: {', '.join(map(str, known)) or 'none'})")
    return row


def mission_summary(store: Store, mission: dict[str, Any]) -> dict[str, Any]:
    """One mission: status, spend, current epoch, units by status, pending approvals."""
    mission_id = mission["id"]
    epoch = store.query("SELECT number, status FROM epochs WHERE mission_id = ? "
                        "ORDER BY number DESC LIMIT 1", (mission_id,))
    counts = Counter(r["status"] for r in store.query(
        "SELECT status FROM units WHERE mission_id = ? AND is_leaf = 1", (mission_id,)))
    pending = store.query("SELECT id, gate, title, unit_id, created_at, expires_at FROM approvals "
                          "WHERE mission_id = ? AND status = ? ORDER BY id",
                          (mission_id, ApprovalStatus.PENDING.value))
    return {
        "id": mission_id,
        "objective": mission["objective"],
        "status": mission["status"],
        "outcome": mission["outcome"],
        "started_at": mission["started_at"],
        "ended_at": mission["ended_at"],
        "spend_usd": round(float(mission["total_cost_usd"] or 0.0), 6),
        "epoch": epoch[0] if epoch else None,
        "units_by_status": dict(sorted(counts.items())),
        "pending_approvals": pending,
    }


def status(stores: ProjectStores, project_name: str | None) -> dict[str, Any]:
    """The project's active missions (running, paused), else its last one."""
    project = stores.project(project_name)
    store = stores.store(project)
    marks = ",".join("?" for _ in ACTIVE)
    active = store.query(f"SELECT * FROM missions WHERE status IN ({marks}) ORDER BY id", ACTIVE)
    missions = active or [mission_row(store, project, None)]
    return {
        "project": project.name,
        "running": bool(active),
        "missions": [mission_summary(store, m) for m in missions],
    }


def list_missions(stores: ProjectStores, project_name: str | None, limit: int = 20) -> dict[str, Any]:
    project = stores.project(project_name)
    store = stores.store(project)
    rows = store.query(
        "SELECT id, objective, status, outcome, started_at, ended_at, total_cost_usd "
        "FROM missions ORDER BY id DESC LIMIT ?", (max(1, min(limit, 500)),))
    return {"project": project.name, "missions": rows}


_UNIT_FIELDS = ("id", "parent_id", "title", "status", "reason", "specialist", "priority",
                "is_leaf", "branch", "attempt_count", "review_score", "cost_usd", "updated_at")


def list_units(stores: ProjectStores, project_name: str | None,
               mission_id: int | None = None) -> dict[str, Any]:
    project = stores.project(project_name)
    store = stores.store(project)
    mission = mission_row(store, project, mission_id)
    units = [{k: u[k] for k in _UNIT_FIELDS} for u in store.units(mission["id"])]
    return {"project": project.name, "mission_id": mission["id"], "units": units}


def unit_detail(stores: ProjectStores, project_name: str | None, unit_id: str,
                max_diff_bytes: int = DEFAULT_DIFF_BYTES) -> dict[str, Any]:
    """A unit with its attempts and the diff of its branch against its base commit."""
    project = stores.project(project_name)
    store = stores.store(project)
    unit = store.get("units", unit_id)
    if unit is None:
        raise OperationError(f"unit {unit_id!r} does not exist in project {project.name!r}")
    attempts = store.query(
        "SELECT id, role, backend, model, status, summary, cost_usd, input_tokens, "
        "output_tokens, started_at, ended_at, exit_code, failure_reason "
        "FROM attempts WHERE unit_id = ? ORDER BY id", (unit_id,))
    detail = {k: v for k, v in unit.items() if k != "review_feedback"}
    detail["review_feedback"] = unit.get("review_feedback")
    detail["attempts"] = attempts
    detail.update(unit_diff(project, unit, max(1_000, min(max_diff_bytes, MAX_DIFF_BYTES))))
    return {"project": project.name, "unit": detail}


def unit_diff(project: Project, unit: dict[str, Any], max_bytes: int) -> dict[str, Any]:
    """``diff``, ``diffstat``, ``diff_base``, ``diff_head`` of the unit's branch (its current
    head, else the recorded head commit) against its base commit; ``diff_error`` instead
    when there is nothing to diff. Read through the engine's git layer, never a checkout."""
    from engine.gitops import GitError, GitRepo

    base = unit.get("base_commit")
    if not base:
        return {"diff": None, "diff_error": "no base commit recorded for this unit yet"}
    try:
        repo = GitRepo(project.target_path)
        head = (repo.ref_head(unit["branch"]) if unit.get("branch") else None) or unit.get("head_commit")
        if not head:
            return {"diff": None, "diff_error": "no commits recorded for this unit yet"}
        stat = repo.diff_stat(base, head)
        return {"diff_base": base, "diff_head": head, "diffstat": stat.text,
                "files_changed": stat.files, "insertions": stat.insertions,
                "deletions": stat.deletions, "diff": repo.diff_text(base, head, max_bytes)}
    except GitError as exc:
        return {"diff": None, "diff_error": str(exc)}


def list_approvals(stores: ProjectStores, project_name: str | None, mission_id: int | None = None,
                   pending_only: bool = True) -> dict[str, Any]:
    project = stores.project(project_name)
    store = stores.store(project)
    mission = mission_row(store, project, mission_id)
    where = "mission_id = ?" + (" AND status = 'pending'" if pending_only else "")
    rows = store.query(
        "SELECT id, gate, title, unit_id, status, diffstat, created_at, expires_at, decided_at, "
        f"decided_by FROM approvals WHERE {where} ORDER BY id", (mission["id"],))
    return {"project": project.name, "mission_id": mission["id"], "approvals": rows}


def event_tail(stores: ProjectStores, project_name: str | None, mission_id: int | None,
               limit: int = DEFAULT_EVENT_TAIL) -> dict[str, Any]:
    """The last ``limit`` events of a mission, oldest first."""
    project = stores.project(project_name)
    store = stores.store(project)
    mission = mission_row(store, project, mission_id)
    rows = store.query(
        "SELECT id, ts, kind, unit_id, payload FROM events WHERE mission_id = ? "
        "ORDER BY id DESC LIMIT ?", (mission["id"], max(1, min(limit, MAX_EVENT_TAIL))))
    events = [{**r, "payload": json.loads(r["payload"] or "{}")} for r in reversed(rows)]
    return {"project": project.name, "mission_id": mission["id"], "events": events}


def report(stores: ProjectStores, project_name: str | None, mission_id: int | None) -> dict[str, Any]:
    """The post-mission report of ``engine/report.py`` (works on a running mission too)."""
    from engine.report import build_report

    project = stores.project(project_name)
    store = stores.store(project)
    mission = mission_row(store, project, mission_id)
    return build_report(store, mission["id"])


# ---------------------------------------------------------------------------- acting
def send_command(stores: ProjectStores, project_name: str | None, kind: CommandKind,
                 mission_id: int | None = None) -> dict[str, Any]:
    """Queue pause / resume / stop for the running engine (it polls the commands table)."""
    project = stores.project(project_name)
    store = stores.store(project)
    mission = mission_row(store, project, mission_id)
    if mission["status"] not in ACTIVE:
        raise OperationError(f"mission {mission['id']} is {mission['status']}: nothing to {kind}")
    command_id = store.send_command(mission["id"], kind.value)
    return {"project": project.name, "mission_id": mission["id"], "command": kind.value,
            "command_id": command_id, "status": mission["status"],
            "note": f"{kind.value} requested; the engine applies it within a few seconds"}


def decide(stores: ProjectStores, project_name: str | None, approval_id: int,
           approved: bool, by: str = DECIDED_BY) -> dict[str, Any]:
    """Approve or deny a pending approval; the first decision wins (any later one is an error
    that says who decided and how)."""
    project = stores.project(project_name)
    store = stores.store(project)
    row = store.get("approvals", approval_id)
    if row is None:
        raise OperationError(f"approval {approval_id} does not exist in project {project.name!r}")
    if not store.decide_approval(approval_id, approved, by=by):
        row = store.get("approvals", approval_id) or row
        raise OperationError(f"approval {approval_id} was already decided: {row['status']} "
                             f"by {row['decided_by'] or 'unknown'}")
    row = store.get("approvals", approval_id) or row
    return {"project": project.name, "approval_id": approval_id, "gate": row["gate"],
            "title": row["title"], "status": row["status"], "decided_by": row["decided_by"]}
