"""Kill -9 the headless mission at several points; the resumed run finishes the same way."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.demo import prepare_demo
from engine.store import Store
from tests.e2e.conftest import git, run_mc

pytestmark = pytest.mark.slow

# kill when the n-th event of this kind is in the store
KILL_POINTS = [
    ("attempt.started", 2),  # workers running
    ("review.scored", 1),  # between review and the queue
    ("verification.started", 1),  # verification in flight
    ("fixup.started", 1),  # N-of-M fixup running
    ("green.promoted", 2),  # after a promotion
]


def start_mission(config: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "mc_tui", "mission", "--config", str(config), "--no-ui", "--yes"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def wait_for_event(db: Path, kind: str, count: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if db.exists():
            try:
                store = Store(db)
                n = store.query("SELECT COUNT(*) AS n FROM events WHERE kind = ?", (kind,))[0]["n"]
                store.close()
            except Exception:
                n = 0
            if n >= count:
                return True
        if proc.poll() is not None:
            return False
        time.sleep(0.02)
    return False


def merged_titles(db: Path) -> list[str]:
    store = Store(db)
    try:
        return sorted(u["title"] for u in store.units(1) if u["is_leaf"] and u["status"] == "merged")
    finally:
        store.close()


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    config = prepare_demo(tmp_path_factory.mktemp("baseline"))
    result = run_mc("mission", "--config", str(config), "--no-ui", "--yes", timeout=120)
    assert result.returncode == 0, result.stdout[-2000:]
    return merged_titles(config.parent / "repo" / ".git" / "mc" / "mission.db")


@pytest.mark.parametrize(("kind", "count"), KILL_POINTS)
def test_sigkill_then_resume_finishes_the_same(tmp_path: Path, baseline: list[str], kind: str, count: int) -> None:
    config = prepare_demo(tmp_path / "demo")
    repo = config.parent / "repo"
    db = repo / ".git" / "mc" / "mission.db"
    proc = start_mission(config)
    try:
        reached = wait_for_event(db, kind, count, proc)
        assert reached, f"the mission never reached {kind} #{count}"
        os.killpg(proc.pid, signal.SIGKILL)  # the engine and every agent it started
    finally:
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL

    resumed = run_mc("mission", "--config", str(config), "--no-ui", "--yes", "--resume", timeout=120)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-2000:]

    store = Store(db)
    missions = store.query("SELECT * FROM missions")
    assert len(missions) == 1 and missions[0]["status"] == "completed"
    # the same merged result as an uninterrupted run
    assert merged_titles(db) == baseline
    # no duplicate merges: one promoted merge per unit, each unit's commit once in mc/green
    promoted = [m["unit_id"] for m in store.rows("merges", "status = 'promoted'") if m["unit_id"]]
    assert len(promoted) == len(set(promoted))
    subjects = git(repo, "log", "--format=%s", "mc/green").splitlines()
    for title in ("Add multiply and divide with tests", "Add variance and stdev",
                  "Document the API in the README"):
        assert subjects.count(title) == 1, subjects
    # mc/green holds a commit that passes verification, and the user's checkout is untouched
    check = subprocess.run(
        [sys.executable, "-m", "unittest", "discover", "-s", "tests", "-t", "."],
        cwd=_checkout(repo, tmp_path / "green"), capture_output=True, text=True,
    )
    assert check.returncode == 0, check.stderr
    assert git(repo, "status", "--porcelain") == ""
    assert git(repo, "rev-list", "--count", "main") == "1"


def _checkout(repo: Path, dest: Path) -> Path:
    subprocess.run(["git", "clone", "-q", "--branch", "mc/green", str(repo), str(dest)], check=True)
    return dest
