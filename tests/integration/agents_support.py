"""Shared by the agent integration tests (the `repo` and `store` fixtures are in conftest.py)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from engine.store import Store

FAKES = Path(__file__).resolve().parents[1] / "fakes"  # tests/fakes/claude, the protocol double


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def make_unit(store: Store, **fields: object) -> tuple[int, dict]:
    """A running mission with one running unit ``u1``; returns (mission id, unit row)."""
    mission_id = store.insert("missions", {"objective": "calc", "status": "running",
                                           "started_at": time.time()})
    now = time.time()
    row = {"id": "u1", "mission_id": mission_id, "title": "Add subtract",
           "description": "Add subtract(a, b) to calc.py.", "files_hint": ["calc.py"],
           "acceptance_criteria": ["subtract(3, 1) == 2", "has a test"], "status": "running",
           "attempt_count": 1, "created_at": now, "updated_at": now, **fields}
    store.insert("units", row)
    return int(mission_id), store.get("units", "u1")
