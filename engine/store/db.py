"""The mission store: one SQLite database (sqlite-utils), the single source of truth.

Every state change is a row; every status change goes through
:meth:`Store.set_status`, which writes the row and its event in one transaction.

Size: :class:`Store` is the one gateway to the database; its transactions, events, rows,
status changes, costs, approvals and commands share one connection and its lock.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from engine import clock
from engine.models import (
    UNIT_TRANSITIONS,
    ApprovalStatus,
    Event,
    UnitStatus,
)
from engine.secrets import redact, secret_values
from engine.store.events import EventBus, follow, read_events_after
from engine.store.migrations import SchemaTooNewError, migrate

BUSY_TIMEOUT_MS = 10_000
JSON_COLUMNS = {
    "units": ("files_hint", "acceptance_criteria", "dependencies", "tools", "stacked_on"),
    "merges": ("conflict_paths", "requires"),
    "verifications": ("failing_tests",),
    "decisions": ("factors",),
}
STATUS_TABLES = ("missions", "epochs", "units", "attempts", "merges", "verifications", "approvals")


class StoreError(RuntimeError):
    """A store problem phrased for the user (bad path, newer schema, illegal transition)."""


class IllegalTransition(StoreError):
    pass


class Store:
    """Thread-safe access to the mission database."""

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        if not readonly:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        elif not self.path.exists():
            raise StoreError(f"{self.path}: no mission store here yet")
        try:
            conn = sqlite3.connect(
                str(self.path), isolation_level=None, check_same_thread=False, timeout=30
            )
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot open store: {exc}") from None
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA foreign_keys = ON")
        if not readonly:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
        self.conn = conn
        self._sqlite_utils_db: Any = None
        self._lock = threading.RLock()
        self._depth = 0
        self._pending: list[Event] = []
        self._secrets = secret_values()
        self.bus = EventBus(self._read_after)
        try:
            if not readonly:
                migrate(conn)
            else:
                from engine.store.migrations import SCHEMA_VERSION, current_version

                if current_version(conn) > SCHEMA_VERSION:
                    raise SchemaTooNewError(
                        f"database schema version {current_version(conn)} is newer than "
                        f"this mc supports ({SCHEMA_VERSION})"
                    )
        except SchemaTooNewError as exc:
            conn.close()
            raise StoreError(f"{self.path}: {exc}") from None

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ transactions
    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Nested-safe write transaction; events are published after the outer commit."""
        with self._lock:
            outer = self._depth == 0
            if outer:
                self.conn.execute("BEGIN IMMEDIATE")
            self._depth += 1
            try:
                yield self.conn
            except BaseException:
                self._depth -= 1
                if outer:
                    self.conn.execute("ROLLBACK")
                    self._pending.clear()
                raise
            self._depth -= 1
            if outer:
                self.conn.execute("COMMIT")
                pending, self._pending = self._pending, []
        if outer:
            for event in pending:
                self.bus.publish(event)

    def _clean(self, value: Any) -> Any:
        return redact(value, self._secrets)

    # ------------------------------------------------------------------ events
    def append_event(
        self,
        kind: str,
        *,
        mission_id: int | None = None,
        unit_id: str | None = None,
        **payload: Any,
    ) -> Event:
        """Append one event row (inside the current transaction, if any)."""
        payload = self._clean(payload)
        ts = clock.now()
        with self.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO events (ts, kind, mission_id, unit_id, payload) VALUES (?,?,?,?,?)",
                (ts, kind, mission_id, unit_id, json.dumps(payload, default=str)),
            )
            event = Event(
                id=cur.lastrowid, ts=ts, kind=kind, mission_id=mission_id, unit_id=unit_id,
                payload=payload,
            )
            self._pending.append(event)
        return event

    def _read_after(self, after_id: int, mission_id: int | None) -> list[Event]:
        with self._lock:
            return read_events_after(self.conn, after_id, mission_id=mission_id)

    def events_after(self, after_id: int, mission_id: int | None = None) -> list[Event]:
        return self._read_after(after_id, mission_id)

    def subscribe(self, *, after_id: int = 0, mission_id: int | None = None) -> AsyncIterator[Event]:
        return self.bus.subscribe(after_id=after_id, mission_id=mission_id)

    def follow(self, *, after_id: int = 0, mission_id: int | None = None) -> AsyncIterator[Event]:
        return follow(self._read_after, after_id=after_id, mission_id=mission_id)

    def last_event_id(self) -> int:
        with self._lock:
            row = self.conn.execute("SELECT MAX(id) FROM events").fetchone()
        return int(row[0] or 0)

    # ------------------------------------------------------------------ generic rows
    def insert(self, table: str, row: dict[str, Any], *, event: str | None = None) -> Any:
        """Insert a row (JSON-encoding list/dict values) and optionally an event; returns its id."""
        row = {k: self._encode(v) for k, v in row.items()}
        cols = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        with self.transaction() as conn:
            cur = conn.execute(f"INSERT INTO {table} ({cols}) VALUES ({marks})", list(row.values()))
            row_id = row.get("id", cur.lastrowid)
            if event:
                self.append_event(
                    event,
                    mission_id=row.get("mission_id") if table != "missions" else row_id,
                    unit_id=row.get("unit_id") if table != "units" else row_id,
                    id=row_id,
                )
        return row_id

    def update(self, table: str, row_id: Any, **fields: Any) -> None:
        if not fields:
            return
        encoded = {k: self._encode(v) for k, v in fields.items()}
        sets = ", ".join(f"{k} = ?" for k in encoded)
        with self.transaction() as conn:
            conn.execute(f"UPDATE {table} SET {sets} WHERE id = ?", [*encoded.values(), row_id])

    def get(self, table: str, row_id: Any) -> dict[str, Any] | None:
        with self._lock:
            cur = self.conn.execute(f"SELECT * FROM {table} WHERE id = ?", (row_id,))
            row = cur.fetchone()
            if row is None:
                return None
            return self._decode(table, dict(zip([d[0] for d in cur.description], row, strict=True)))

    def rows(self, table: str, where: str | None = None, params: Any = (), order: str = "id") -> list[dict[str, Any]]:
        """Rows of ``table`` (JSON columns decoded). Plain SQL: this is on the engine's hot path."""
        names, raws = self.raw_rows(table, where, params, order)
        return [self.decode(table, names, raw) for raw in raws]

    def raw_rows(self, table: str, where: str | None = None, params: Any = (),
                 order: str = "id") -> tuple[list[str], list[tuple[Any, ...]]]:
        """Column names and undecoded row tuples of ``table`` (JSON columns as stored): for a
        caller that memoises what it builds from a row (``UnitLedger``) and decodes a row
        (:meth:`decode`) only when it changed."""
        sql = f"SELECT * FROM {table}" + (f" WHERE {where}" if where else "") + f" ORDER BY {order}"
        with self._lock:
            cur = self.conn.execute(sql, params)
            return [d[0] for d in cur.description], cur.fetchall()

    def decode(self, table: str, names: list[str], raw: tuple[Any, ...]) -> dict[str, Any]:
        """One row of :meth:`raw_rows` as :meth:`rows` gives it (JSON columns decoded)."""
        return self._decode(table, dict(zip(names, raw, strict=True)))

    @property
    def db(self) -> Any:
        """The sqlite-utils view of the database (schema work, ad-hoc inspection), on the same
        connection, each of its primitives under the store's lock (see :func:`_locked_database`).

        Imported on first use: the engine's hot paths and ``mc`` start-up use plain SQL.
        """
        if self._sqlite_utils_db is None:
            self._sqlite_utils_db = _locked_database(self.conn, self._lock)
        return self._sqlite_utils_db

    def query(self, sql: str, params: Any = ()) -> list[dict[str, Any]]:
        """Rows of ``sql`` as dicts."""
        with self._lock:
            cur = self.conn.execute(sql, params)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def _encode(self, value: Any) -> Any:
        if isinstance(value, list | dict | tuple):
            return json.dumps(self._clean(value), default=str)
        if isinstance(value, str):
            return self._clean(value)
        if isinstance(value, Path):
            return str(value)
        return value

    @staticmethod
    def _decode(table: str, row: dict[str, Any]) -> dict[str, Any]:
        for col in JSON_COLUMNS.get(table, ()):
            if isinstance(row.get(col), str):
                row[col] = json.loads(row[col])
        return row

    # ------------------------------------------------------------------ status changes
    def set_status(
        self, table: str, row_id: Any, status: str, *, reason: str | None = None, **fields: Any
    ) -> Event:
        """The one place status changes happen: row update + event, one transaction."""
        if table not in STATUS_TABLES:
            raise StoreError(f"{table} has no status")
        status = str(status)
        with self.transaction():
            current = self.get(table, row_id)
            if current is None:
                raise StoreError(f"{table} {row_id} does not exist")
            old = current["status"]
            if table == "units" and old != status:
                allowed = UNIT_TRANSITIONS[UnitStatus(old)]
                if UnitStatus(status) not in allowed:
                    raise IllegalTransition(f"unit {row_id}: {old} -> {status} is not allowed")
            if table == "units":
                fields["updated_at"] = clock.now()
                if reason is not None:
                    fields["reason"] = reason
            if table == "merges":
                fields["updated_at"] = clock.now()
                if reason is not None:
                    fields["reason"] = reason
            self.update(table, row_id, status=status, **fields)
            mission_id = current.get("mission_id") if table != "missions" else row_id
            unit_id = row_id if table == "units" else current.get("unit_id")
            payload: dict[str, Any] = {"id": row_id, "from": old, "to": status}
            if reason:
                payload["reason"] = reason
            if table == "approvals" and fields.get("decided_by"):
                payload["by"] = fields["decided_by"]  # so every channel can show who decided
            return self.append_event(
                f"{table[:-1]}.status", mission_id=mission_id, unit_id=unit_id, **payload
            )

    # ------------------------------------------------------------------ domain helpers
    def ensure_project(self, name: str, path: str | Path) -> int:
        path = str(Path(path).resolve())
        with self.transaction() as conn:
            row = conn.execute("SELECT id FROM projects WHERE path = ?", (path,)).fetchone()
            if row:
                return int(row[0])
            return self.insert("projects", {"name": name, "path": path, "created_at": clock.now()})

    def latest_mission(self) -> dict[str, Any] | None:
        rows = self.query("SELECT * FROM missions ORDER BY id DESC LIMIT 1")
        return rows[0] if rows else None

    def units(self, mission_id: int) -> list[dict[str, Any]]:
        return self.rows("units", "mission_id = ?", (mission_id,), order="created_at, id")

    def add_cost(
        self,
        *,
        mission_id: int | None,
        role: str,
        usd: float,
        model: str | None = None,
        unit_id: str | None = None,
        attempt_id: int | None = None,
        estimated: bool = False,
    ) -> None:
        with self.transaction():
            self.insert(
                "costs",
                {
                    "mission_id": mission_id, "unit_id": unit_id, "attempt_id": attempt_id,
                    "role": role, "model": model, "usd": usd, "estimated": int(estimated),
                    "ts": clock.now(),
                },
            )
            if mission_id is not None:
                self.conn.execute(
                    "UPDATE missions SET total_cost_usd = total_cost_usd + ? WHERE id = ?",
                    (usd, mission_id),
                )
            if unit_id is not None:
                self.conn.execute(
                    "UPDATE units SET cost_usd = cost_usd + ? WHERE id = ?", (usd, unit_id)
                )
            self.append_event(
                "cost", mission_id=mission_id, unit_id=unit_id, role=role, model=model,
                usd=usd, estimated=estimated,
            )

    def mission_cost(self, mission_id: int) -> float:
        with self._lock:
            row = self.conn.execute(
                "SELECT COALESCE(SUM(usd), 0) FROM costs WHERE mission_id = ?", (mission_id,)
            ).fetchone()
        return float(row[0])

    # approvals --------------------------------------------------------------
    def create_approval(
        self,
        *,
        mission_id: int | None,
        gate: str,
        title: str,
        unit_id: str | None = None,
        diffstat: str = "",
        diff: str = "",
        timeout: float | None = None,
    ) -> int:
        now = clock.now()
        with self.transaction():
            approval_id = self.insert(
                "approvals",
                {
                    "mission_id": mission_id, "unit_id": unit_id, "gate": gate,
                    "status": ApprovalStatus.PENDING.value, "title": title,
                    "diffstat": diffstat, "diff": diff, "created_at": now,
                    "expires_at": now + timeout if timeout else None,
                },
            )
            self.append_event(
                "approval.requested", mission_id=mission_id, unit_id=unit_id,
                id=approval_id, gate=gate, title=title, expires_at=now + timeout if timeout else None,
            )
        return int(approval_id)

    def decide_approval(
        self, approval_id: int, approved: bool, *, by: str, reason: str | None = None
    ) -> bool:
        """Decide a pending approval; returns False if it was already decided (the first
        decision wins). ``by`` names the channel and person; ``reason`` (a denial's, say)
        goes into the ``approval.status`` event with ``by``."""
        status = ApprovalStatus.APPROVED if approved else ApprovalStatus.DENIED
        with self.transaction():
            row = self.get("approvals", approval_id)
            if row is None:
                raise StoreError(f"approval {approval_id} does not exist")
            if row["status"] != ApprovalStatus.PENDING:
                return False
            self.set_status(
                "approvals", approval_id, status, reason=reason or None,
                decided_at=clock.now(), decided_by=by,
            )
        return True

    # commands -----------------------------------------------------------------
    def send_command(self, mission_id: int, kind: str, **payload: Any) -> int:
        with self.transaction():
            cid = self.insert(
                "commands",
                {"mission_id": mission_id, "kind": kind, "payload": payload, "created_at": clock.now()},
            )
            self.append_event("command", mission_id=mission_id, id=cid, command=kind)
        return int(cid)

    def take_commands(self, mission_id: int) -> list[dict[str, Any]]:
        """Pending commands for a mission, marked handled."""
        with self._lock:
            pending = self.conn.execute(
                "SELECT 1 FROM commands WHERE mission_id = ? AND handled_at IS NULL LIMIT 1",
                (mission_id,),
            ).fetchone()
        if pending is None:  # the common case: no write lock taken
            return []
        with self.transaction() as conn:
            rows = self.rows("commands", "mission_id = ? AND handled_at IS NULL", (mission_id,))
            if rows:
                conn.execute(
                    "UPDATE commands SET handled_at = ? WHERE mission_id = ? AND handled_at IS NULL",
                    (clock.now(), mission_id),
                )
        return rows


def open_store(path: str | Path, *, readonly: bool = False) -> Store:
    return Store(path, readonly=readonly)


def _locked_database(conn: sqlite3.Connection, lock: Any) -> Any:
    """A ``sqlite_utils.Database`` on ``conn`` whose primitives (``execute``, ``query``,
    ``executescript``, ``atomic``, ``ensure_autocommit_on``) hold ``lock``, the store's.

    sqlite-utils decides per call whether a transaction is open (``conn.in_transaction``) and
    commits what it opened itself; on a connection another thread is writing through
    :meth:`Store.transaction`, that check could see no transaction, then commit the other
    thread's half-done one ("cannot commit - no transaction is active" at its COMMIT, seen
    in the kill loop). Under the lock a primitive waits for that transaction to end.
    """
    import sqlite_utils

    class LockedDatabase(sqlite_utils.Database):  # type: ignore[misc]
        def execute(self, *args: Any, **kwargs: Any) -> Any:
            with lock:
                return super().execute(*args, **kwargs)

        def executescript(self, *args: Any, **kwargs: Any) -> Any:
            with lock:
                return super().executescript(*args, **kwargs)

        def query(self, *args: Any, **kwargs: Any) -> Any:
            with lock:  # read every row while holding it: the cursor shares the connection
                return iter(list(super().query(*args, **kwargs)))

        @contextmanager
        def atomic(self) -> Iterator[Any]:
            with lock, super().atomic() as db:
                yield db

        @contextmanager
        def ensure_autocommit_on(self) -> Iterator[None]:
            with lock, super().ensure_autocommit_on():
                yield

    return LockedDatabase(conn)
