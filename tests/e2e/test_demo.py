"""End to end: `mc demo --no-ui` runs the whole pipeline on the bundled example."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.store import Store

pytestmark = pytest.mark.slow


def run_mc(*args: str, cwd: Path | None = None, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "160"}
    return subprocess.run(
        [sys.executable, "-m", "mc_tui", *args], capture_output=True, text=True, cwd=cwd,
        env=env, timeout=timeout, stdin=subprocess.DEVNULL,
    )


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str], float]:
    dest = tmp_path_factory.mktemp("demo")
    started = time.monotonic()
    result = run_mc("demo", "--no-ui", "--yes", "--dir", str(dest))
    return dest, result, time.monotonic() - started


def events(store: Store, kind: str) -> list[dict]:
    return [
        {**json.loads(r["payload"]), "unit_id": r["unit_id"]}
        for r in store.query("SELECT * FROM events WHERE kind = ? ORDER BY id", (kind,))
    ]


def test_demo_succeeds_quickly_and_prints_the_repo(demo) -> None:
    dest, result, seconds = demo
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert seconds < 60, f"demo took {seconds:.1f}s"
    assert str(dest / "repo") in result.stdout
    assert "completed" in result.stdout


def test_demo_shows_the_whole_pipeline(demo) -> None:
    dest, result, _ = demo
    store = Store(dest / "repo" / ".git" / "mc" / "mission.db")
    mission = store.latest_mission()
    assert mission["status"] == "completed"
    units = store.units(mission["id"])
    leaves = [u for u in units if u["is_leaf"]]
    inner = [u for u in units if not u["is_leaf"]]
    # a plan tree of depth 2 with at least 6 units
    assert len(leaves) >= 6 and inner
    assert all(u["parent_id"] for u in leaves)
    assert all(u["status"] == "merged" for u in leaves), [(u["title"], u["status"], u["reason"]) for u in leaves]
    # 3 workers in parallel
    attempts = store.query(
        "SELECT started_at, ended_at FROM attempts WHERE role = 'worker' ORDER BY started_at"
    )
    peak = max(
        sum(1 for b in attempts if b["started_at"] <= a["started_at"] < (b["ended_at"] or 1e18))
        for a in attempts
    )
    assert peak >= 3
    # a review-gate rejection and retry
    reviews = events(store, "review.scored")
    rejected = [r for r in reviews if not r["passed"]]
    assert rejected
    assert any(r["unit_id"] == rejected[0]["unit_id"] and r["passed"] for r in reviews)
    # a merge conflict resolved by fixup, and a verification failure resolved by N-of-M fixup
    merges = store.rows("merges", "mission_id = ?", (mission["id"],))
    # found by the queue, or already when the second unit's agent was done (the first had
    # merged by then: engine/dispatch.py conflicts_on_green)
    to_fixup = [e for e in events(store, "unit.status") if e.get("to") == "fixup"]
    assert any(m["status"] == "conflict" for m in merges) or any(
        "conflict in" in (e.get("reason") or "") for e in to_fixup), to_fixup
    verifications = store.rows("verifications", "mission_id = ?", (mission["id"],))
    assert any(v["status"] == "failed" for v in verifications)
    winners = [w for w in events(store, "fixup.winner") if w.get("candidate")]
    assert len({w["unit_id"] for w in winners}) >= 2
    candidates = events(store, "fixup.candidate")
    assert any(not c["verified"] for c in candidates) and any(c["verified"] for c in candidates)
    # the push approval and the push
    approvals = store.rows("approvals", "gate = 'push'")
    assert approvals and approvals[0]["status"] == "approved"
    pushes = events(store, "push.result")
    assert pushes and pushes[-1]["ok"]
    repo = dest / "repo"
    green = git(repo, "rev-parse", "mc/green")
    assert git(dest / "origin.git", "rev-parse", "main") == green
    # feedback: every unit has a reward; the test delta counts the tests its merge brought
    rewards = {r["unit_id"]: r for r in events(store, "unit.reward")}
    assert set(rewards) == {u["id"] for u in leaves}
    by_title = {u["title"]: rewards[u["id"]] for u in leaves}
    assert by_title["Add multiply and divide"]["test_delta"] == 3
    assert by_title["Document the API in the README"]["test_delta"] == 0
    # nothing merged twice: every promoted merge is for a distinct unit
    promoted = [m["unit_id"] for m in merges if m["status"] == "promoted"]
    assert len(promoted) == len(set(promoted))


def test_demo_green_passes_its_tests_and_checkout_is_untouched(demo, tmp_path: Path) -> None:
    dest, _, _ = demo
    repo = dest / "repo"
    assert git(repo, "status", "--porcelain") == ""
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD") == "main"
    assert git(repo, "rev-list", "--count", "main") == "1"  # the user's branch never moved
    clone = tmp_path / "green"
    subprocess.run(["git", "clone", "-q", "--branch", "mc/green", str(repo), str(clone)], check=True)
    tests = subprocess.run(
        [sys.executable, "-m", "unittest", "discover", "-s", "tests", "-t", "."],
        cwd=clone, capture_output=True, text=True,
    )
    assert tests.returncode == 0, tests.stderr
    assert "Ran 1" in tests.stderr  # 10+ tests from all merged units


def test_status_summary_report_after_demo(demo) -> None:
    dest, _, _ = demo
    config = str(dest / "mission-control.toml")
    status = run_mc("status", "--config", config)
    assert status.returncode == 0 and "completed" in status.stdout
    summary = run_mc("summary", "--config", config)
    assert summary.returncode == 0 and "Cost by model" in summary.stdout
    out = dest / "report.json"
    report = run_mc("report", "--config", config, "--output", str(out))
    assert report.returncode == 0, report.stderr
    data = json.loads(out.read_text())
    assert data["mission"]["status"] == "completed"
    assert data["cost"]["total_usd"] > 0
    assert len([u for u in data["units"] if u["is_leaf"]]) >= 6
