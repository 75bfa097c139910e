"""The project registry: every project ``mc`` serves, in one SQLite file in the user's data folder.

Location: ``$MC_REGISTRY`` if set (a file path; tests use it), else
``$XDG_DATA_HOME/mission-control/projects.db`` (``~/.local/share/...`` when unset).
SQLite serialises concurrent writers (``BEGIN IMMEDIATE`` + a busy timeout), so two
``mc register`` at once cannot lose an entry.

Each project: its name (unique), config path (absolute), target repository path, store path (``<state dir>/mission.db``
of that config), and the last mission id and status, which :meth:`Registry.projects` reads
live from the project's store (read-only; the cached values are kept for when the store is
gone). Services (MCP, A2A, the live dashboard) pick a project with :meth:`Registry.resolve`.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from engine.config import ConfigError, TargetConfig, load_config

if TYPE_CHECKING:
    from engine.config import MissionConfig

REGISTRY_ENV = "MC_REGISTRY"
DEFAULT_TARGET_NAME = TargetConfig.model_fields["name"].default
BUSY_TIMEOUT_S = 10.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS projects (
    name TEXT PRIMARY KEY,
    config_path TEXT NOT NULL UNIQUE,
    target_path TEXT NOT NULL,
    store_path TEXT NOT NULL,
    last_mission_id INTEGER,
    last_status TEXT,
    registered_at REAL NOT NULL,
    updated_at REAL NOT NULL
)
"""


class RegistryError(Exception):
    """A registry problem phrased for the user."""


class UnknownProject(RegistryError):
    """No project of that name; the message lists the registered ones."""


class DuplicateProject(RegistryError):
    """The name, or the config, is registered already."""


@dataclass(frozen=True)
class Project:
    """One registered project. Times are Unix seconds; ``updated_at`` is the last change of
    the mission row (its end, heartbeat or start), else the registration time."""

    name: str
    config_path: Path
    target_path: Path
    store_path: Path
    last_mission_id: int | None
    last_status: str | None
    registered_at: float
    updated_at: float

    def load_config(self) -> MissionConfig:
        """The project's config, freshly read (raises :class:`ConfigError`)."""
        return load_config(self.config_path)


def default_registry_path() -> Path:
    """``$MC_REGISTRY``, else ``$XDG_DATA_HOME/mission-control/projects.db``."""
    override = os.environ.get(REGISTRY_ENV)
    if override:
        return Path(override).expanduser()
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home).expanduser() / "mission-control" / "projects.db"


def default_name(config: MissionConfig) -> str:
    """``target.name``, or the config's folder name when ``target.name`` is the default."""
    if config.target.name and config.target.name != DEFAULT_TARGET_NAME:
        return config.target.name
    return config.base_dir.resolve().name


def mission_state(store_path: Path) -> tuple[int | None, str | None, float | None]:
    """(id, status, last change) of the newest mission in the store at ``store_path``, read
    without writing; ``(None, None, None)`` when there is no store or no mission yet."""
    if not store_path.exists():
        return None, None, None
    try:
        conn = sqlite3.connect(f"{store_path.resolve().as_uri()}?mode=ro", uri=True,
                               timeout=BUSY_TIMEOUT_S)
    except sqlite3.Error:
        return None, None, None
    try:
        row = conn.execute(
            "SELECT id, status, started_at, ended_at, heartbeat_at FROM missions "
            "ORDER BY id DESC LIMIT 1"
        ).fetchone()
    except sqlite3.Error:  # no schema yet, or not a store
        return None, None, None
    finally:
        conn.close()
    if row is None:
        return None, None, None
    changed = max(t for t in row[2:] if t is not None)
    return int(row[0]), str(row[1]), float(changed)


def project_of_config(config_path: str | Path, name: str | None = None) -> Project:
    """The :class:`Project` of a config file, registered or not (raises :class:`ConfigError`
    naming the key path when the config does not validate)."""
    config = load_config(config_path)
    source = config.source_path
    assert source is not None  # load_config requires the file
    name = (name or default_name(config)).strip()
    if not name:
        raise RegistryError("a project name cannot be empty")
    store_path = config.db_path().resolve()
    last_id, last_status, changed = mission_state(store_path)
    now = time.time()
    return Project(name, source, config.target.path.resolve(), store_path, last_id, last_status,
                   now, changed or now)


class Registry:
    """The registry file. Cheap to create; every call opens and closes its own connection."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_registry_path()

    @contextmanager
    def _connect(self, *, write: bool = False) -> Iterator[sqlite3.Connection]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise RegistryError(f"{self.path}: cannot open the project registry: {exc}") from None
        try:
            conn.execute(_SCHEMA)
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise RegistryError(f"{self.path}: project registry error: {exc}") from None
        finally:
            conn.close()

    # ------------------------------------------------------------------ changes
    def register(self, config_path: str | Path, name: str | None = None) -> Project:
        """Add the project of ``config_path`` (validated: raises :class:`ConfigError` naming
        the key path); ``name`` defaults to :func:`default_name`. Raises
        :class:`DuplicateProject` when the name or the config is registered already."""
        project = project_of_config(config_path, name)
        source, target, store_path = project.config_path, project.target_path, project.store_path
        name, last_id, last_status = project.name, project.last_mission_id, project.last_status
        changed = project.updated_at
        now = project.registered_at
        with self._connect(write=True) as conn:
            row = conn.execute("SELECT name FROM projects WHERE name = ?", (name,)).fetchone()
            if row is not None:
                raise DuplicateProject(
                    f"a project named {name!r} is registered already "
                    f"(pick another with --name, or `mc unregister {name}` first)"
                )
            row = conn.execute(
                "SELECT name FROM projects WHERE config_path = ?", (str(source),)
            ).fetchone()
            if row is not None:
                raise DuplicateProject(f"{source} is registered already as {row[0]!r}")
            conn.execute(
                "INSERT INTO projects VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (name, str(source), str(target), str(store_path), last_id, last_status, now,
                 changed),
            )
        return project

    def unregister(self, name: str) -> Project:
        """Remove a project (its repository and store are untouched); returns it."""
        with self._connect(write=True) as conn:
            project = self._get(conn, name)
            conn.execute("DELETE FROM projects WHERE name = ?", (name,))
        return project

    # ------------------------------------------------------------------ reading
    def projects(self, *, live: bool = True) -> list[Project]:
        """Every project by name; with ``live``, last mission and status read from each store
        now (and the cache in the registry updated when they changed)."""
        with self._connect() as conn:
            found = [self._row(r) for r in conn.execute("SELECT * FROM projects ORDER BY name")]
        return [self._refresh(p) for p in found] if live else found

    def names(self) -> list[str]:
        with self._connect() as conn:
            return [r[0] for r in conn.execute("SELECT name FROM projects ORDER BY name")]

    def get(self, name: str, *, live: bool = True) -> Project:
        """The project called ``name``; raises :class:`UnknownProject` listing the known ones."""
        with self._connect() as conn:
            project = self._get(conn, name)
        return self._refresh(project) if live else project

    def find_by_config(self, config_path: str | Path) -> Project | None:
        """The project registered for this config file, if any."""
        path = str(Path(config_path).resolve())
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM projects WHERE config_path = ?", (path,)).fetchone()
        return self._row(row) if row else None

    def resolve(self, name: str | None = None, *, default_config: str | Path | None = None) -> Project:
        """The project a service call means: ``name`` if given; else the project registered for
        ``default_config``; else the only registered project. Raises :class:`UnknownProject`
        (listing the registered names) when that is ambiguous or unknown."""
        if name:
            return self.get(name)
        if default_config is not None:
            project = self.find_by_config(default_config)
            if project is not None:
                return self._refresh(project)
            raise UnknownProject(f"{default_config} is not registered ({self._known()})")
        projects = self.projects(live=False)
        if len(projects) == 1:
            return self._refresh(projects[0])
        if not projects:
            raise UnknownProject("no project is registered: add one with `mc register --config PATH`")
        raise UnknownProject(f"several projects are registered: name one ({self._known()})")

    # ------------------------------------------------------------------ internals
    def _get(self, conn: sqlite3.Connection, name: str) -> Project:
        row = conn.execute("SELECT * FROM projects WHERE name = ?", (name,)).fetchone()
        if row is None:
            names = [r[0] for r in conn.execute("SELECT name FROM projects ORDER BY name")]
            raise UnknownProject(f"unknown project {name!r} ({_known_text(names)})")
        return self._row(row)

    def _known(self) -> str:
        return _known_text(self.names())

    @staticmethod
    def _row(row: tuple[object, ...]) -> Project:
        name, config, target, store, last_id, last_status, registered, updated = row
        return Project(
            name=str(name), config_path=Path(str(config)), target_path=Path(str(target)),
            store_path=Path(str(store)),
            last_mission_id=int(last_id) if last_id is not None else None,  # type: ignore[call-overload]
            last_status=str(last_status) if last_status is not None else None,
            registered_at=float(registered),  # type: ignore[arg-type]
            updated_at=float(updated),  # type: ignore[arg-type]
        )

    def _refresh(self, project: Project) -> Project:
        last_id, last_status, changed = mission_state(project.store_path)
        if last_id is None:
            return project  # the store is gone or empty: keep what was last seen
        fresh = replace(project, last_mission_id=last_id, last_status=last_status,
                        updated_at=changed or project.updated_at)
        if fresh != project:
            try:
                with self._connect(write=True) as conn:
                    conn.execute(
                        "UPDATE projects SET last_mission_id = ?, last_status = ?, updated_at = ? "
                        "WHERE name = ?", (last_id, last_status, fresh.updated_at, project.name),
                    )
            except RegistryError:
                pass  # a read-only registry still lists live values
        return fresh


def _known_text(names: list[str]) -> str:
    return "registered: " + ", ".join(names) if names else "no project is registered"


__all__ = [
    "REGISTRY_ENV",
    "ConfigError",
    "DuplicateProject",
    "Project",
    "Registry",
    "RegistryError",
    "UnknownProject",
    "default_name",
    "default_registry_path",
    "mission_state",
    "project_of_config",
]
