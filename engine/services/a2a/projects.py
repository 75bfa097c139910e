"""The projects the A2A server serves, and what it does to them: start a mission, read its
status, ask it to stop. Everything goes through the project's store; a mission always runs in
its own detached ``mc mission --no-ui`` process, never inside the server."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.config import ConfigError, MissionConfig, load_config
from engine.models import ApprovalStatus, CommandKind, MissionStatus
from engine.registry import Registry, RegistryError
from engine.store import Store, StoreError

ACTIVE_MISSION = frozenset({MissionStatus.PENDING, MissionStatus.RUNNING, MissionStatus.PAUSED})
START_TIMEOUT_S = 60.0


class ProjectError(ValueError):
    """A request names no project, an unknown one, or one whose config does not load."""


class MissionStartError(RuntimeError):
    """The spawned ``mc mission`` ended (or never made a mission row) before its mission began."""


@dataclass(frozen=True)
class Project:
    """A project the server may act on: its name and its ``mission-control.toml``."""

    name: str
    config_path: Path

    def config(self) -> MissionConfig:
        """The project's config (raises :class:`ProjectError` naming the bad key)."""
        try:
            return load_config(self.config_path)
        except ConfigError as exc:
            raise ProjectError(f"project {self.name!r}: {exc}") from None

    def store(self) -> Store | None:
        """The project's store, or None when no mission ever ran there."""
        path = self.config().db_path()
        if not path.exists():
            return None
        try:
            return Store(path)
        except StoreError as exc:
            raise ProjectError(f"project {self.name!r}: {exc}") from None


class Projects:
    """The projects served: the registry's (read at each request, so a project registered
    while the server runs is served at once) and a default one (``mc a2a --config``'s)."""

    def __init__(self, projects: list[Project] | None = None, *, registry: Registry | None = None,
                 default: Project | None = None) -> None:
        self._fixed = {p.name: p for p in projects or []}
        self.registry = registry
        self.default = default
        if default is not None:
            self._fixed.setdefault(default.name, default)

    def names(self) -> list[str]:
        names = set(self._fixed)
        if self.registry is not None:
            try:
                names.update(self.registry.names())
            except RegistryError:
                pass
        return sorted(names)

    def get(self, name: str | None) -> Project:
        """The project called ``name``; with no name, the default project, else the only one
        (raises :class:`ProjectError` listing the known names)."""
        if not name:
            if self.default is not None:
                return self.default
            names = self.names()
            if len(names) == 1:
                return self.get(names[0])
            raise ProjectError(f"say which project: one of {', '.join(names) or '(none)'}")
        if name in self._fixed:
            return self._fixed[name]
        if self.registry is not None:
            try:
                found = self.registry.get(name, live=False)
                return Project(found.name, found.config_path)
            except RegistryError:
                pass
        raise ProjectError(
            f"unknown project {name!r}: known projects are {', '.join(self.names()) or '(none)'}")


@dataclass
class LaunchedMission:
    """A detached ``mc mission --no-ui`` process and its log file."""

    process: subprocess.Popen[bytes]
    log_path: Path
    started_at: float

    def log_tail(self, limit: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-limit:].strip()
        except OSError:
            return ""


def launch_mission(project: Project, objective: str, *, environ: dict[str, str] | None = None,
                   drop_env: tuple[str, ...] = ()) -> LaunchedMission:
    """Start ``mc mission --no-ui --objective ...`` for ``project`` in its own process group
    (``start_new_session``), stdout and stderr to ``<state dir>/a2a-mission-<time>.log``.
    ``drop_env`` names variables the mission must not inherit (the server's token)."""
    config = project.config()
    log_dir = config.state_dir()
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"a2a-mission-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    env = dict(os.environ if environ is None else environ)
    for name in drop_env:
        env.pop(name, None)
    command = [sys.executable, "-m", "mc_tui", "mission", "--no-ui",
               "--config", str(project.config_path.resolve()), "--objective", objective]
    started_at = time.time()
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            cwd=project.config_path.resolve().parent, env=env, start_new_session=True,
        )
    return LaunchedMission(process, log_path, started_at)


def mission_of_process(store: Store, pid: int, since: float) -> int | None:
    """The mission the process ``pid`` created or adopted at or after ``since`` (Unix time):
    the row records its owner's pid and a heartbeat; an older row with a reused pid is not it."""
    rows = store.query("SELECT id FROM missions WHERE pid = ? AND heartbeat_at >= ? "
                       "ORDER BY id DESC LIMIT 1", (pid, since))
    return int(rows[0]["id"]) if rows else None


def mission_status(store: Store, mission_id: int | None = None) -> dict[str, Any]:
    """What the "mission status" skill answers: ``{mission_id, objective, status, outcome,
    epoch: {number, status} | None, spend_usd, budget_usd, units: {status: leaf count},
    pending_approvals: [{id, gate, title}]}``. Raises ``KeyError`` for an unknown mission."""
    if mission_id is None:
        mission = store.latest_mission()
        if mission is None:
            raise KeyError("no missions yet")
    else:
        mission = store.get("missions", mission_id)
        if mission is None:
            raise KeyError(f"mission {mission_id} does not exist")
    mid = int(mission["id"])
    epochs = store.query(
        "SELECT number, status FROM epochs WHERE mission_id = ? ORDER BY number DESC LIMIT 1",
        (mid,))
    units = store.query(
        "SELECT status, COUNT(*) AS n FROM units WHERE mission_id = ? AND is_leaf = 1 "
        "GROUP BY status ORDER BY status", (mid,))
    approvals = store.query(
        "SELECT id, gate, title FROM approvals WHERE mission_id = ? AND status = ? ORDER BY id",
        (mid, ApprovalStatus.PENDING.value))
    budget = None
    try:
        import json

        budget = json.loads(mission["config_json"])["scheduler"]["budget"]["max_per_run_usd"]
    except (KeyError, TypeError, ValueError):
        pass
    return {
        "mission_id": mid,
        "objective": mission["objective"],
        "status": mission["status"],
        "outcome": mission["outcome"],
        "epoch": epochs[0] if epochs else None,
        "spend_usd": round(float(mission["total_cost_usd"] or 0.0), 6),
        "budget_usd": budget,
        "units": {row["status"]: int(row["n"]) for row in units},
        "pending_approvals": approvals,
    }


def describe_status(status: dict[str, Any]) -> str:
    """One line per fact of :func:`mission_status`, for a text part."""
    epoch = status["epoch"]
    units = ", ".join(f"{n} {s}" for s, n in status["units"].items()) or "none yet"
    budget = f" of ${status['budget_usd']:.2f}" if status["budget_usd"] is not None else ""
    lines = [
        f"mission #{status['mission_id']}: {status['status']}"
        + (f" ({status['outcome']})" if status["outcome"] else ""),
        f"objective: {status['objective']}",
        f"epoch: {epoch['number']} ({epoch['status']})" if epoch else "epoch: none yet",
        f"spend: ${status['spend_usd']:.2f}{budget}",
        f"units: {units}",
    ]
    for approval in status["pending_approvals"]:
        lines.append(f"approval #{approval['id']} pending: {approval['gate']}: {approval['title']}")
    return "\n".join(lines)


def request_stop(store: Store, mission_id: int) -> None:
    """Ask the mission's engine to stop gracefully (the commands table, as `mc dashboard` does):
    running agents are cancelled, verified work still lands, the mission ends ``stopped``."""
    store.send_command(mission_id, CommandKind.STOP.value)


def decide_pending(store: Store, mission_id: int, approved: bool, *, by: str) -> list[int]:
    """Decide every pending approval of the mission; returns the ids decided."""
    decided = []
    for row in store.rows("approvals", "mission_id = ? AND status = ?",
                          (mission_id, ApprovalStatus.PENDING.value)):
        if store.decide_approval(int(row["id"]), approved, by=by):
            decided.append(int(row["id"]))
    return decided
