"""What the MCP server does, free of the MCP SDK: read a registered project's store, act on it
through its commands and approvals tables, start a mission as a detached ``mc mission``.

Every function takes a :class:`ProjectStores` (the registry plus one open store per project)
and returns plain JSON-able dicts. Bad input raises :class:`OperationError` with a message for
the caller (unknown project, mission, unit, approval; a mission that is not running ...).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from engine.config import ConfigError
from engine.models import ApprovalStatus, CommandKind, MissionStatus
from engine.registry import Project, Registry, RegistryError, mission_state
from engine.store import Store, StoreError

ACTIVE = (MissionStatus.RUNNING.value, MissionStatus.PAUSED.value, MissionStatus.PENDING.value)
DEFAULT_DIFF_BYTES = 60_000
MAX_DIFF_BYTES = 400_000
DEFAULT_EVENT_TAIL = 100
MAX_EVENT_TAIL = 2_000
START_TIMEOUT_S = 60.0
DECIDED_BY = "mcp"


class OperationError(Exception):
    """A request that cannot be served, phrased for the MCP client."""


class ProjectStores:
    """The registry and one open store per project (opened on first use, thread-safe).

    ``default``: the project a call without ``project`` means (``mc mcp --config``; served
    even when it is not registered); without it, the only registered project (see
    :meth:`Registry.resolve`).
    """

    def __init__(self, registry: Registry, default: Project | None = None,
                 private_env: tuple[str, ...] = ()) -> None:
        self.registry = registry
        self.default = default
        self.private_env = private_env  # the server's token variables: kept from missions
        self._stores: dict[Path, Store] = {}
        self._lock = threading.Lock()

    def project(self, name: str | None) -> Project:
        """The project ``name`` means; :class:`OperationError` listing the known ones."""
        if self.default is not None and name in (None, "", self.default.name):
            return self.default
        try:
            return self.registry.resolve(name or None)
        except RegistryError as exc:
            raise OperationError(str(exc)) from None

    def store(self, project: Project) -> Store:
        """The project's store; :class:`OperationError` when it has none yet."""
        path = project.store_path
        with self._lock:
            store = self._stores.get(path)
            if store is not None:
                return store
            if not path.exists():
                raise OperationError(
                    f"project {project.name!r} has no missions yet (no store at {path})")
            try:
                store = Store(path)
            except StoreError as exc:
                raise OperationError(str(exc)) from None
            self._stores[path] = store
            return store

    def close(self) -> None:
        with self._lock:
            for store in self._stores.values():
                store.close()
            self._stores.clear()


# ---------------------------------------------------------------------------- backlog
def _backlog(stores: ProjectStores, project_name: str | None) -> tuple[Project, Any]:
    from engine.strategy.backlog import Backlog

    project = stores.project(project_name)
    try:
        weights = project.load_config().discovery.track_weights
    except (ConfigError, OSError):
        weights = None  # the formula's default weights
    return project, Backlog(stores.store(project), weights)


def list_backlog(stores: ProjectStores, project_name: str | None,
                 include_closed: bool = False, limit: int = 50) -> dict[str, Any]:
    """The project's backlog, highest priority first (``docs/learning.md``)."""
    from engine.strategy.backlog import ACTIVE

    project, backlog = _backlog(stores, project_name)
    rows = backlog.items(None if include_closed else ACTIVE)[:max(1, min(limit, 500))]
    keep = ("id", "title", "track", "state", "impact", "effort", "effective_score",
            "score_override", "age_days", "source", "evidence", "mission_id")
    return {"project": project.name, "items": [{k: r[k] for k in keep} for r in rows]}


def add_backlog_item(stores: ProjectStores, project_name: str | None, title: str,
                     track: str, impact: int, effort: int, evidence: str) -> dict[str, Any]:
    """Add an item (or merge it into the same one: same track and title words)."""
    from engine.strategy.backlog import BacklogError, BacklogItem

    project, backlog = _backlog(stores, project_name)
    try:
        item_id, created = backlog.add(BacklogItem(title=title, track=track, impact=impact,
                                                   effort=effort, evidence=evidence, source="mcp"))
    except BacklogError as exc:
        raise OperationError(str(exc)) from None
    row = backlog.get(item_id)
    return {"project": project.name, "id": item_id, "created": created, "score": row["score"]}


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


def start_mission(stores: ProjectStores, project_name: str | None, objective: str,
                  timeout: float = START_TIMEOUT_S) -> dict[str, Any]:
    """Spawn ``mc mission --no-ui --objective ...`` detached (own session, output to
    ``<state dir>/mcp-missions/<time>.log``) and return the new mission's id once its row
    exists; :class:`OperationError` with the log's tail when the process ends first."""
    objective = objective.strip()
    if not objective:
        raise OperationError("objective must not be empty")
    project = stores.project(project_name)
    try:
        config = project.load_config()
    except ConfigError as exc:
        raise OperationError(f"project {project.name!r}: {exc}") from None
    from engine.gitops import GitError, GitRepo

    try:  # as `mc mission` does first; and the log folder lives in the repository's git dir
        GitRepo(config.target.path)
    except GitError as exc:
        raise OperationError(f"project {project.name!r}: target.path: {exc}") from None
    before = _latest_id(project.store_path)
    log_dir = config.state_dir() / "mcp-missions"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{time.monotonic_ns()}.log"
    command = [sys.executable, "-m", "mc_tui", "mission", "--no-ui",
               "--config", str(project.config_path), "--objective", objective]
    spawned = time.time()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            cwd=project.config_path.parent, start_new_session=True,
            env=mission_env(stores.private_env),
        )
    threading.Thread(target=proc.wait, name=f"mc-mission-{proc.pid}", daemon=True).start()
    started = {"project": project.name, "pid": proc.pid, "objective": objective,
               "log": str(log_path)}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        exited = proc.poll() is not None
        mission_id = _mission_of(project.store_path, proc.pid, after=before, since=spawned)
        if mission_id is not None:  # the row this process created (it may even be done)
            return {**started, "mission_id": mission_id}
        if exited:
            raise OperationError(
                f"mc mission exited with code {proc.returncode} before creating a mission:\n"
                f"{_tail(log_path)}")
        time.sleep(0.1)
    raise OperationError(f"no mission row after {timeout:.0f}s (mc mission pid {proc.pid} "
                         f"still running; log: {log_path})")


def mission_env(private: tuple[str, ...] = ()) -> dict[str, str]:
    """The environment of a started mission: the server's, without its token variables."""
    hidden = {"MC_MCP_TOKEN", "MC_SERVICES_TOKEN", *private}
    return {**{k: v for k, v in os.environ.items() if k not in hidden}, "COLUMNS": "120"}


def _mission_of(store_path: Path, pid: int, *, after: int | None, since: float) -> int | None:
    """The mission process ``pid`` created (id above ``after``) or adopted to resume it (an
    interrupted mission with the same objective: its pid and heartbeat are renewed)."""
    import sqlite3

    if not store_path.exists():
        return None
    try:
        conn = sqlite3.connect(f"{store_path.resolve().as_uri()}?mode=ro", uri=True, timeout=10)
        try:
            row = conn.execute(
                "SELECT id FROM missions WHERE pid = ? AND (id > ? OR heartbeat_at >= ?) "
                "ORDER BY id DESC LIMIT 1", (pid, after or 0, since)).fetchone()
        finally:
            conn.close()
    except sqlite3.Error:  # no schema yet: the process is still setting up
        return None
    return int(row[0]) if row else None


def _latest_id(store_path: Path) -> int | None:
    return mission_state(store_path)[0]


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.strip().splitlines()[-lines:])
