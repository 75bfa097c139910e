"""Starting a mission for the MCP server: ``mc mission --no-ui`` spawned detached, and the
id of the mission row it created, or the tail of its log when it ended first.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from engine.config import ConfigError
from engine.registry import mission_state
from engine.services.mcp.stores import OperationError, ProjectStores

START_TIMEOUT_S = 60.0


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
