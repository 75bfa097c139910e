"""A mission for the TUI's snapshots, recorded from the real pipeline (test support).

:func:`record` runs the real pipeline with scripted agents (``scripted_mission``: three
units, one worker, so each unit is merged in its own batch, in order) under a fixed engine
clock (``engine/clock.py``) with fixed commit dates, and copies the target when the mission
waits at the ``push`` gate (``pending``: a pending approval, every unit merged) and when it
has ended (``ended``: pushed, objective met). Every row, event, commit and diff in it was
made by the engine itself, so the pictures cannot drift from what it emits; with the clock
fixed and the work serial, the same run records the same world every time, but for what a
run measures or draws at random: :func:`scrub` makes those stable (session and batch ids in
order of appearance, verification durations and the queue's own timestamps, which
``engine/gitops`` still takes from the real clock, test timings in verification output, and
the recording's paths).

:func:`world_copy` hands each test its own copy of a recording (recorded once per session).
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import Literal

import anyio

from engine import clock
from tests.support.scripted_mission import scripted_mission

RECORDED_TS = 1_700_000_000.0
Moment = Literal["pending", "ended"]
DB = Path("repo") / ".git" / "mc" / "mission.db"


def _copy(root: Path, dest: Path) -> None:
    """The target (repo with its store) at this moment: files copied, the store through
    SQLite's backup (consistent while the engine writes), then scrubbed."""
    shutil.copytree(root / "repo", dest / "repo", symlinks=True,
                    ignore=shutil.ignore_patterns("mission.db*", "worktrees", "*.lock"))
    source = sqlite3.connect(root / DB)
    target = sqlite3.connect(dest / DB)
    try:
        source.backup(target)
        scrub(target, root)
    finally:
        target.close()
        source.close()


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_BATCH = re.compile(r"\b(b\d+)-([0-9a-f]{8})\b")
_DURATION = re.compile(r'"duration_s": [0-9.]+')
_RAN = re.compile(r"(Ran \d+ tests? in )[0-9.]+s")
# (table, column, value): measured or real-clock values, made stable
_FIXED = [("verifications", "duration_s", 0.1), ("verifications", "started_at", RECORDED_TS),
          ("verifications", "ended_at", RECORDED_TS), ("merges", "created_at", RECORDED_TS),
          ("merges", "updated_at", RECORDED_TS), ("missions", "active_s", 1.0),
          ("missions", "pid", None), ("queue_journal", "ts", RECORDED_TS)]


def scrub(conn: sqlite3.Connection, root: Path) -> None:
    """Make a recorded store's volatile values stable (see the module's docstring)."""
    ids: dict[str, str] = {}

    def stable(value: str) -> str:
        value = value.replace(str(root), "/recorded").replace(sys.executable, "python")
        value = _UUID.sub(lambda m: ids.setdefault(m[0], f"00000000-0000-4000-8000-{len(ids):012d}"),
                          value)
        value = _BATCH.sub(lambda m: ids.setdefault(m[0], f"{m[1]}-{len(ids):08d}"), value)
        value = _RAN.sub(r"\g<1>0.001s", value)
        return _DURATION.sub('"duration_s": 0.1', value)

    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                         "AND name NOT LIKE 'sqlite_%' ORDER BY name = 'events' DESC, name")]
    with conn:
        for table in tables:
            columns = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
            try:
                rows = conn.execute(f"SELECT rowid, * FROM {table} ORDER BY rowid").fetchall()
            except sqlite3.OperationalError:  # a full-text index's own tables (no rowid)
                continue
            for row in rows:
                changed = {col: stable(val) for col, val in zip(columns, row[1:], strict=True)
                           if isinstance(val, str) and stable(val) != val}
                if changed:
                    sets = ", ".join(f"{col} = ?" for col in changed)
                    conn.execute(f"UPDATE {table} SET {sets} WHERE rowid = ?",
                                 [*changed.values(), row[0]])
        for table, column, value in _FIXED:
            if table in tables:
                conn.execute(f"UPDATE {table} SET {column} = ?", (value,))


def record(root: Path, dests: dict[Moment, Path], timeout: float = 120) -> None:
    """Run the scripted mission under ``root``; copy it to ``dests`` at each moment."""
    dates = {"GIT_AUTHOR_DATE": f"@{int(RECORDED_TS)} +0000",
             "GIT_COMMITTER_DATE": f"@{int(RECORDED_TS)} +0000"}
    saved = {k: os.environ.get(k) for k in dates}
    os.environ.update(dates)  # the target's first commit (made by the test, not the engine)
    try:
        with clock.use_clock(clock.fixed_clock(RECORDED_TS)):
            mission = scripted_mission(root, units=3, workers=1, serial_queue=True,
                                       push_gate=True, approval_timeout=timeout)
            outcome: list[int] = []
            engine = threading.Thread(target=lambda: outcome.append(anyio.run(mission.engine)))
            engine.start()
            try:
                approval = _wait_for_approval(mission.store, engine, timeout)
                if "pending" in dests:
                    _copy(root, dests["pending"])
                mission.store.decide_approval(approval, approved=True, by="recording")
            finally:
                engine.join(timeout)
            assert outcome == [0], f"the recorded mission ended {outcome}"
            if "ended" in dests:
                _copy(root, dests["ended"])
            mission.store.close()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _wait_for_approval(store, engine: threading.Thread, timeout: float) -> int:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and engine.is_alive():
        rows = store.query("SELECT id FROM approvals WHERE status = 'pending'")
        if rows:
            return int(rows[0]["id"])
        time.sleep(0.02)
    raise AssertionError("the recorded mission never reached its push gate")


_CACHE: dict[Moment, Path] = {}


def world_copy(cache_root: Path, dest: Path, moment: Moment) -> Path:
    """A copy of the recording at ``moment`` in ``dest``; returns its store's path."""
    if moment not in _CACHE:
        run = cache_root / "run"
        dests: dict[Moment, Path] = {"pending": cache_root / "pending",
                                     "ended": cache_root / "ended"}
        record(run, dests)
        _CACHE.update(dests)
    shutil.copytree(_CACHE[moment], dest, symlinks=True)
    return dest / DB
