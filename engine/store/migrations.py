"""Ordered schema migrations, tracked with ``PRAGMA user_version``.

Each migration is a list of SQL statements, or a function of the connection for one that
must read old rows to fill new columns. Never edit a released migration: append a new
one. Opening a database migrates it forward in one transaction per step.

Size: the list of every released migration, append-only by design (never edited, never split).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable

Migration = list[str] | Callable[[sqlite3.Connection], None]


def _decision_columns(conn: sqlite3.Connection) -> None:
    """13: the decisions the engine used to recompute from event payloads, as columns
    (``engine/ledger.py`` writes them in the event's transaction):

    - ``epochs``: the feedback phase's figures (``feedback_at``, ``units_merged``,
      ``units_failed``, ``cost_usd``, ``tests_passed``, ``tests_failed``, ``lint_errors``: the
      cost and stall trackers a resumed mission rebuilds) and the objective decision taken
      after it (``objective_met``: NULL = not checked, ``objective_feedback``,
      ``objective_check``: which check of the mission it was): where a resume starts;
    - ``units``: a fixup round's winner not yet delivered to the merge queue
      (``winner_round``, ``winner_candidate``, ``winner_approach``, ``winner_head``; cleared by
      the unit's next move).

    Older stores are filled from their events, exactly as the payload readers decided.
    """
    for statement in (
        "ALTER TABLE epochs ADD COLUMN feedback_at REAL",
        "ALTER TABLE epochs ADD COLUMN units_merged INTEGER",
        "ALTER TABLE epochs ADD COLUMN units_failed INTEGER",
        "ALTER TABLE epochs ADD COLUMN cost_usd REAL",
        "ALTER TABLE epochs ADD COLUMN tests_passed INTEGER",
        "ALTER TABLE epochs ADD COLUMN tests_failed INTEGER",
        "ALTER TABLE epochs ADD COLUMN lint_errors INTEGER",
        "ALTER TABLE epochs ADD COLUMN objective_met INTEGER",
        "ALTER TABLE epochs ADD COLUMN objective_feedback TEXT",
        "ALTER TABLE epochs ADD COLUMN objective_check INTEGER",
        "ALTER TABLE units ADD COLUMN winner_round INTEGER",
        "ALTER TABLE units ADD COLUMN winner_candidate INTEGER",
        "ALTER TABLE units ADD COLUMN winner_approach TEXT",
        "ALTER TABLE units ADD COLUMN winner_head TEXT",
    ):
        conn.execute(statement)
    completed: dict[int, int] = {}  # mission -> the epoch that completed last
    winners: dict[str, dict[str, object] | None] = {}  # unit -> its undelivered winner
    rows = conn.execute(
        "SELECT ts, kind, mission_id, unit_id, payload FROM events WHERE kind IN ('epoch.feedback', "
        "'epoch.status', 'objective.checked', 'fixup.winner', 'unit.status', 'unit.submitted') "
        "ORDER BY id")
    for ts, kind, mission_id, unit_id, raw in rows.fetchall():
        payload = json.loads(raw or "{}")
        if kind == "epoch.feedback" and payload.get("epoch_id") is not None:
            conn.execute(
                "UPDATE epochs SET feedback_at = ?, units_merged = ?, units_failed = ?, "
                "cost_usd = ?, tests_passed = ?, tests_failed = ?, lint_errors = ? WHERE id = ?",
                (ts, int(payload.get("merged") or 0), int(payload.get("failed") or 0),
                 float(payload.get("cost") or 0.0), payload.get("tests_passed"),
                 payload.get("tests_failed"), payload.get("lint_errors"), payload["epoch_id"]))
        elif kind == "epoch.status" and payload.get("to") == "completed":
            completed[mission_id] = payload.get("id")
        elif kind == "objective.checked" and completed.get(mission_id) is not None:
            conn.execute(
                "UPDATE epochs SET objective_met = ?, objective_feedback = ?, objective_check = ?"
                " WHERE id = ?", (int(bool(payload.get("met"))), payload.get("feedback"),
                                  payload.get("check"), completed[mission_id]))
        elif kind == "fixup.winner" and unit_id is not None:
            winners[unit_id] = payload if payload.get("head") and payload.get("candidate") else None
        elif unit_id is not None:  # unit.status / unit.submitted: the winner moved on
            winners[unit_id] = None
    for unit_id, winner in winners.items():
        if winner is not None:
            conn.execute(
                "UPDATE units SET winner_round = ?, winner_candidate = ?, winner_approach = ?, "
                "winner_head = ? WHERE id = ?",
                (winner.get("round"), winner.get("candidate"), winner.get("approach"),
                 winner.get("head"), unit_id))


MIGRATIONS: list[Migration] = [
    # 1: the core tables
    [
        """CREATE TABLE projects (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL,
            path TEXT NOT NULL UNIQUE,
            created_at REAL NOT NULL
        )""",
        """CREATE TABLE missions (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            project_id INTEGER REFERENCES projects(id),
            parent_mission_id INTEGER REFERENCES missions(id),
            objective TEXT NOT NULL,
            status TEXT NOT NULL,
            outcome TEXT,
            config_json TEXT NOT NULL DEFAULT '{}',
            base_branch TEXT,
            started_at REAL NOT NULL,
            ended_at REAL,
            pid INTEGER,
            heartbeat_at REAL,
            total_cost_usd REAL NOT NULL DEFAULT 0
        )""",
        """CREATE TABLE epochs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            mission_id INTEGER NOT NULL REFERENCES missions(id),
            number INTEGER NOT NULL,
            status TEXT NOT NULL,
            plan_score REAL,
            summary TEXT,
            started_at REAL NOT NULL,
            ended_at REAL,
            UNIQUE (mission_id, number)
        )""",
        """CREATE TABLE units (
            id TEXT PRIMARY KEY,
            mission_id INTEGER NOT NULL REFERENCES missions(id),
            epoch_id INTEGER REFERENCES epochs(id),
            parent_id TEXT REFERENCES units(id),
            title TEXT NOT NULL,
            description TEXT NOT NULL DEFAULT '',
            files_hint TEXT NOT NULL DEFAULT '[]',
            acceptance_criteria TEXT NOT NULL DEFAULT '[]',
            dependencies TEXT NOT NULL DEFAULT '[]',
            specialist TEXT NOT NULL DEFAULT 'general',
            priority INTEGER NOT NULL DEFAULT 3,
            is_leaf INTEGER NOT NULL DEFAULT 1,
            status TEXT NOT NULL,
            reason TEXT,
            branch TEXT,
            base_commit TEXT,
            head_commit TEXT,
            attempt_count INTEGER NOT NULL DEFAULT 0,
            review_score REAL,
            review_feedback TEXT,
            reward REAL,
            cost_usd REAL NOT NULL DEFAULT 0,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        )""",
        """CREATE TABLE attempts (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            mission_id INTEGER NOT NULL REFERENCES missions(id),
            unit_id TEXT REFERENCES units(id),
            role TEXT NOT NULL,
            backend TEXT NOT NULL,
            model TEXT,
            slot INTEGER,
            status TEXT NOT NULL,
            summary TEXT,
            cost_usd REAL NOT NULL DEFAULT 0,
            cost_estimated INTEGER NOT NULL DEFAULT 0,
            input_tokens INTEGER NOT NULL DEFAULT 0,
            output_tokens INTEGER NOT NULL DEFAULT 0,
            cache_read_tokens INTEGER NOT NULL DEFAULT 0,
            cache_write_tokens INTEGER NOT NULL DEFAULT 0,
            turns INTEGER NOT NULL DEFAULT 0,
            session_id TEXT,
            exit_code INTEGER,
            error TEXT,
            failure_reason TEXT,
            started_at REAL NOT NULL,
            ended_at REAL
        )""",
        """CREATE TABLE merges (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            mission_id INTEGER NOT NULL REFERENCES missions(id),
            unit_id TEXT REFERENCES units(id),
            batch_id TEXT,
            branch TEXT NOT NULL,
            head_commit TEXT,
            status TEXT NOT NULL,
            candidate_commit TEXT,
            conflict_paths TEXT NOT NULL DEFAULT '[]',
            reason TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        )""",
        """CREATE TABLE verifications (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            mission_id INTEGER REFERENCES missions(id),
            batch_id TEXT,
            commit_sha TEXT NOT NULL,
            command TEXT NOT NULL,
            status TEXT NOT NULL,
            exit_code INTEGER,
            output TEXT NOT NULL DEFAULT '',
            duration_s REAL,
            started_at REAL NOT NULL,
            ended_at REAL
        )""",
        """CREATE TABLE approvals (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            mission_id INTEGER REFERENCES missions(id),
            unit_id TEXT,
            gate TEXT NOT NULL,
            status TEXT NOT NULL,
            title TEXT NOT NULL,
            diffstat TEXT NOT NULL DEFAULT '',
            diff TEXT NOT NULL DEFAULT '',
            created_at REAL NOT NULL,
            expires_at REAL,
            decided_at REAL,
            decided_by TEXT
        )""",
        """CREATE TABLE costs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            mission_id INTEGER REFERENCES missions(id),
            unit_id TEXT,
            attempt_id INTEGER REFERENCES attempts(id),
            role TEXT NOT NULL,
            model TEXT,
            usd REAL NOT NULL,
            estimated INTEGER NOT NULL DEFAULT 0,
            ts REAL NOT NULL
        )""",
        """CREATE TABLE events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            ts REAL NOT NULL,
            kind TEXT NOT NULL,
            mission_id INTEGER,
            unit_id TEXT,
            payload TEXT NOT NULL DEFAULT '{}'
        )""",
        "CREATE INDEX idx_units_mission ON units(mission_id, status)",
        "CREATE INDEX idx_attempts_unit ON attempts(unit_id)",
        "CREATE INDEX idx_merges_mission ON merges(mission_id, status)",
        "CREATE INDEX idx_events_mission ON events(mission_id, id)",
    ],
    # 2: commands from other processes (attach, CLI) and a per-mission queue journal
    [
        """CREATE TABLE commands (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            mission_id INTEGER REFERENCES missions(id),
            kind TEXT NOT NULL,
            payload TEXT NOT NULL DEFAULT '{}',
            created_at REAL NOT NULL,
            handled_at REAL
        )""",
        """CREATE TABLE queue_journal (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            mission_id INTEGER,
            step TEXT NOT NULL,
            phase TEXT NOT NULL,
            data TEXT NOT NULL DEFAULT '{}',
            ts REAL NOT NULL
        )""",
        "CREATE INDEX idx_commands_pending ON commands(mission_id, handled_at)",
        "CREATE INDEX idx_costs_mission ON costs(mission_id, ts)",
    ],
    # 3: the time a mission actually ran (wall-time limits and reports exclude downtime)
    [
        "ALTER TABLE missions ADD COLUMN active_s REAL NOT NULL DEFAULT 0",
    ],
    # 4: where a unit interrupted by a crash picks up ('review': its agent had finished;
    #    'continue': keep the dead agent's base and commits), cleared when it runs again
    [
        "ALTER TABLE units ADD COLUMN resume_point TEXT",
    ],
    # 5: the process of a running attempt (its supervisor: pid = process group id), with its
    #    start time (/proc/<pid>/stat field 22) and boot id, so a resumed run can end what a
    #    dead run left behind without ever killing a process that merely reuses the pid
    [
        "ALTER TABLE attempts ADD COLUMN pid INTEGER",
        "ALTER TABLE attempts ADD COLUMN pgid INTEGER",
        "ALTER TABLE attempts ADD COLUMN proc_start INTEGER",
        "ALTER TABLE attempts ADD COLUMN boot_id TEXT",
    ],
    # 6: baseline-aware verification: the failing tests a run named (JSON list; NULL when
    #    its output could not be read), whether it was accepted against its baseline (no
    #    worse), and why (a note: baseline failures only, not verifiable, flaky)
    [
        "ALTER TABLE verifications ADD COLUMN failing_tests TEXT",
        "ALTER TABLE verifications ADD COLUMN accepted INTEGER",
        "ALTER TABLE verifications ADD COLUMN note TEXT",
    ],
    # 7: the unit ledger's counters (engine/ledger.py), which decisions read instead of
    #    recounting event payloads; filled from the events of older stores
    [
        "ALTER TABLE units ADD COLUMN review_rejections INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE units ADD COLUMN fixup_rounds INTEGER NOT NULL DEFAULT 0",
        """UPDATE units SET review_rejections = (
            SELECT COUNT(*) FROM events e WHERE e.kind = 'review.scored' AND e.unit_id = units.id
            AND COALESCE(json_extract(e.payload, '$.passed'), 0) = 0)""",
        """UPDATE units SET fixup_rounds = (
            SELECT COUNT(*) FROM events e WHERE e.kind = 'fixup.winner' AND e.unit_id = units.id)""",
    ],
    # 8: circuit breakers per component (engine/resilience/board.py): one row per mission and
    #    component (agent:<backend>/<model>, planner, reviewer, verification, push)
    [
        """CREATE TABLE IF NOT EXISTS breakers (
            mission_id INTEGER NOT NULL REFERENCES missions(id),
            component TEXT NOT NULL,
            state TEXT NOT NULL,
            failures INTEGER NOT NULL DEFAULT 0,
            opened_at REAL,
            updated_at REAL NOT NULL,
            PRIMARY KEY (mission_id, component)
        )""",
    ],
    # 9: learning and strategy (engine/strategy/backlog.py, engine/learning/prompt_evolution.py,
    #    engine/learning/attribution.py): the backlog across missions, prompt variants with
    #    their outcomes, and the decisions each unit's outcome followed
    [
        """CREATE TABLE backlog (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            title TEXT NOT NULL,
            track TEXT NOT NULL DEFAULT 'feature',
            evidence TEXT NOT NULL DEFAULT '',
            impact INTEGER NOT NULL DEFAULT 3,
            effort INTEGER NOT NULL DEFAULT 3,
            state TEXT NOT NULL DEFAULT 'open',
            score REAL NOT NULL DEFAULT 0,
            score_override REAL,
            source TEXT NOT NULL DEFAULT 'manual',
            fingerprint TEXT NOT NULL UNIQUE,
            mission_id INTEGER,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        )""",
        "CREATE INDEX idx_backlog_state ON backlog(state, score)",
        """CREATE TABLE prompt_variants (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            role TEXT NOT NULL,
            name TEXT NOT NULL,
            body TEXT,
            parent_id INTEGER REFERENCES prompt_variants(id),
            successes INTEGER NOT NULL DEFAULT 0,
            failures INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL,
            UNIQUE (role, name)
        )""",
        """CREATE TABLE decisions (
            unit_id TEXT PRIMARY KEY REFERENCES units(id),
            mission_id INTEGER NOT NULL REFERENCES missions(id),
            factors TEXT NOT NULL DEFAULT '{}',
            prompt_variant_id INTEGER REFERENCES prompt_variants(id),
            success INTEGER,
            created_at REAL NOT NULL
        )""",
    ],
    # 10: the host an agent session ran on ([[hosts]], docs/hosts.md); NULL: plain local
    ["ALTER TABLE attempts ADD COLUMN host TEXT"],
    # 11: the session tools the planner asked for per unit (engine/agents/tool_templates.py):
    #    a JSON list of {"name", "scope": [paths]}
    ["ALTER TABLE units ADD COLUMN tools TEXT NOT NULL DEFAULT '[]'"],
    # 12: the planner's "uncertain" mark on a unit: with [speculation] units = "uncertain",
    #     such units are worked by several branches (engine/speculation.py)
    ["ALTER TABLE units ADD COLUMN uncertain INTEGER NOT NULL DEFAULT 0"],
    # 13: decisions as columns, not event payloads (see the function)
    _decision_columns,
    # 14: stacked branches ([scheduler] stacked_branches, engine/stacking.py): the dependency
    #     heads a unit's agent started on ({"green", "base": sha, "heads": {unit id: sha}}), and the
    #     commits a merge row's branch needs in its candidate first (a JSON list)
    ["ALTER TABLE units ADD COLUMN stacked_on TEXT",
     "ALTER TABLE merges ADD COLUMN requires TEXT NOT NULL DEFAULT '[]'"],
]

SCHEMA_VERSION = len(MIGRATIONS)


class SchemaTooNewError(RuntimeError):
    """The database was written by a newer ``mc``."""


def current_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, target: int = SCHEMA_VERSION) -> int:
    """Bring ``conn`` up to ``target``; returns the version it started from."""
    start = current_version(conn)
    _refuse_newer(start)
    while True:
        # Read the version inside the write lock: another process may be migrating too.
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = current_version(conn)
            _refuse_newer(version)
            if version >= target:
                conn.execute("COMMIT")
                return start
            step = MIGRATIONS[version]
            if callable(step):
                step(conn)
            else:
                for statement in step:
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


def _refuse_newer(version: int) -> None:
    if version > SCHEMA_VERSION:
        raise SchemaTooNewError(
            f"database schema version {version} is newer than this mc supports "
            f"({SCHEMA_VERSION}); upgrade mission-control or use another state dir"
        )
