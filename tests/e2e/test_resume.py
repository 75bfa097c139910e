"""Kill -9 the headless mission at several points; the resumed run finishes the same way."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.config import load_config
from engine.demo import prepare_demo
from engine.store import Store
from tests.e2e.conftest import git, leftover_processes, run_mc

pytestmark = pytest.mark.slow

# Kill when the n-th event of this kind (of this agent role, if given) is in the store: 26
# points across the whole demo mission (it emits each of these in an uninterrupted run).
# A plan cut short is thrown away and planned again (an empty failed epoch before the one
# that completes); from the plan's units on, the resumed run finishes the same epoch.
PLANNING_POINTS = [
    ("mission.created", 1),  # recorded, nothing else yet
    ("verification.started", 1),  # the baseline verification of mc/green in flight
    ("baseline.recorded", 1),  # baseline done, planning about to start
    ("attempt.started:planner", 1),  # the root planner running
    ("attempt.started:planner", 2),  # a sub-planner running
    ("attempt.started:planner", 4),  # the last sub-planner running
    ("attempt.started:ambition", 1),  # the ambition gate judging the plan
]
EXECUTION_POINTS = [
    ("unit.created", 1),  # the plan's units inserted, nothing dispatched
    ("attempt.started:worker", 1),  # dispatch: the first worker running
    ("attempt.started:worker", 2),  # workers running in parallel
    ("agent.event", 40),  # in the middle of agent sessions
    ("attempt.started:reviewer", 1),  # review gate running
    ("review.scored", 1),  # between review and the queue
    ("unit.submitted", 1),  # submitted to the merge queue
    ("verification.started", 2),  # a merge batch's verification in flight
    ("merge.status", 6),  # the queue moving changes (merging/verifying/conflict)
    ("green.promoted", 1),  # the first promotion
    ("fixup.started", 1),  # N-of-M fixup running
    ("fixup.candidate", 2),  # fixup candidates scored
    ("fixup.winner", 1),  # a fixup round decided, its winner not yet in the queue
    ("green.promoted", 4),  # promotions of fixed-up work
    ("fixup.started", 2),  # the second fixup
    ("approval.requested", 1),  # waiting at the push gate
    ("push.started", 1),  # pushing mc/green
    ("epoch.feedback", 1),  # the epoch's feedback recorded
    ("attempt.started:objective_check", 1),  # the epoch is over, its objective check running
]
KILL_POINTS = PLANNING_POINTS + EXECUTION_POINTS


def start_mission(config: Path) -> subprocess.Popen[bytes]:
    """``mc mission`` in its own process group; its output goes to ``mc.log`` beside the
    config (read by :func:`why_not_reached` when a kill point is never reached)."""
    log = open(config.parent / "mc.log", "wb")  # noqa: SIM115 - the child holds it
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "mc_tui", "mission", "--config", str(config), "--no-ui", "--yes"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    finally:
        log.close()


def why_not_reached(config: Path, db: Path, kind: str, proc: subprocess.Popen[bytes]) -> str:
    """What a test says when the mission never reached a kill point: how far it got and
    whether it ended (with the tail of its output) or was still running at the deadline."""
    kind, _, role = kind.partition(":")
    seen = _count(db, kind, role) if db.exists() else 0
    state = ("still running at the deadline" if proc.poll() is None
             else f"ended with exit status {proc.returncode}")
    log = config.parent / "mc.log"
    tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
    return f"{seen} {kind} events so far; mc {state}; its output ended:\n{tail}"


def _count(db: Path, kind: str, role: str) -> int:
    store = Store(db)
    try:
        return store.query(
            "SELECT COUNT(*) AS n FROM events WHERE kind = ? "
            "AND (? = '' OR json_extract(payload, '$.role') = ?)", (kind, role, role),
        )[0]["n"]
    finally:
        store.close()


def wait_for_event(db: Path, kind: str, count: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> bool:
    kind, _, role = kind.partition(":")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if db.exists():
            try:
                n = _count(db, kind, role)
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


def unit_report(store: Store) -> str:
    """Every leaf unit with its status and reason, and the error log: what a failure needs."""
    lines = [f"{u['title']}: {u['status']} {u['reason'] or ''}"[:400]
             for u in store.units(1) if u["is_leaf"]]
    lines += [f"log: {e.payload.get('message')}\n{e.payload.get('traceback') or ''}"[-3000:]
              for e in store.events_after(0) if e.kind == "log" and e.payload.get("level") == "error"]
    return "\n".join(lines)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    config = prepare_demo(tmp_path_factory.mktemp("baseline"))
    result = run_mc("mission", "--config", str(config), "--no-ui", "--yes", timeout=120)
    assert result.returncode == 0, result.stdout[-2000:]
    return merged_titles(config.parent / "repo" / ".git" / "mc" / "mission.db")


def epoch_problem(store: Store, cut_plans_allowed: bool) -> str | None:
    """What is wrong with the epochs of a resumed demo mission, or None: one completed epoch,
    preceded only by plans cut short (failed, no units) when the kill came while planning."""
    epochs = store.rows("epochs")
    cut = [e for e in epochs[:-1] if e["status"] == "failed"
           and not store.rows("units", "epoch_id = ?", (e["id"],))]
    ok = bool(epochs) and epochs[-1]["status"] == "completed" and len(cut) == len(epochs) - 1
    if ok and (cut_plans_allowed or len(epochs) == 1):
        return None
    return f"epochs: {[e['status'] for e in epochs]}"


@pytest.mark.parametrize(("kind", "count"), KILL_POINTS,
                         ids=[f"{kind}-{count}" for kind, count in KILL_POINTS])
def test_sigkill_then_resume_finishes_the_same(tmp_path: Path, baseline: list[str], kind: str, count: int) -> None:
    config = prepare_demo(tmp_path / "demo")
    repo = config.parent / "repo"
    db = repo / ".git" / "mc" / "mission.db"
    proc = start_mission(config)
    try:
        reached = wait_for_event(db, kind, count, proc, timeout=120)  # 2 loaded cores
        assert reached, (f"the mission never reached {kind} #{count}: "
                         + why_not_reached(config, db, kind, proc))
        os.killpg(proc.pid, signal.SIGKILL)  # the engine (its agents run in their own groups)
    finally:
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    # agents and verification commands die with mc: nothing keeps running in the worktrees
    assert leftover_processes(tmp_path) == {}

    resumed = run_mc("mission", "--config", str(config), "--no-ui", "--yes", "--resume", timeout=120)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-2000:]

    store = Store(db)
    missions = store.query("SELECT * FROM missions")
    assert len(missions) == 1 and missions[0]["status"] == "completed"
    # the same merged result as an uninterrupted run, in one epoch (plus one cut short
    # while it was still planning, which a resume replans)
    assert merged_titles(db) == baseline, unit_report(store)
    problem = epoch_problem(store, (kind, count) in PLANNING_POINTS)
    assert problem is None, problem
    # no duplicate merges: one promoted merge per unit, each unit's change once in mc/green.
    # (A unit killed mid-commit continues from a `wip:` commit of its saved work, so its own
    # commit subject may not be there: the change itself is what must land exactly once.)
    promoted = [m["unit_id"] for m in store.rows("merges", "status = 'promoted'") if m["unit_id"]]
    assert len(promoted) == len(set(promoted))
    subjects = git(repo, "log", "--format=%s", "mc/green").splitlines()
    for title in ("Add multiply and divide with tests", "Add variance and stdev",
                  "Document the API in the README"):
        assert subjects.count(title) <= 1, subjects
    for path, text in (("README.md", "## API"), ("calc/stats.py", "def variance"),
                       ("calc/__init__.py", '"multiply"'), ("calc/__init__.py", "from calc.power")):
        assert git(repo, "show", f"mc/green:{path}").count(text) == 1, (path, text)
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


def test_resume_after_a_kill_inside_worktree_creation(tmp_path: Path, baseline: list[str]) -> None:
    """The CI failure of 2026-11-25: killed while a fixup candidate's slot was being created.

    `git worktree add` had written only `commondir` and `gitdir` of `.git/worktrees/mc-slot-N`;
    the resumed run could not recreate that slot and the fixup round crashed. Reproduced here
    by leaving such a half registration behind deterministically.
    """
    config = prepare_demo(tmp_path / "demo")
    repo = config.parent / "repo"
    db = repo / ".git" / "mc" / "mission.db"
    proc = start_mission(config)
    try:
        assert wait_for_event(db, "fixup.started", 1, proc)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=10)
    pool = load_config(config).pool_dir()
    admin = repo / ".git" / "worktrees"
    for n in range(3, 7):  # the fixup candidates' slots: none may be left usable
        subprocess.run(["git", "worktree", "remove", "--force", str(pool / f"slot-{n}")],
                       cwd=repo, capture_output=True)
        (admin / f"mc-slot-{n}").mkdir(parents=True, exist_ok=True)
        (admin / f"mc-slot-{n}" / "commondir").write_text("../..\n")
        (admin / f"mc-slot-{n}" / "gitdir").write_text(f"{pool / f'slot-{n}' / '.git'}\n")
        (pool / f"slot-{n}").mkdir(parents=True, exist_ok=True)

    resumed = run_mc("mission", "--config", str(config), "--no-ui", "--yes", "--resume", timeout=120)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-2000:]
    store = Store(db)
    assert merged_titles(db) == baseline, unit_report(store)
    notes = [e.payload.get("message", "") for e in store.events_after(0) if e.kind == "log"]
    assert any("removed half-created worktree mc-slot-" in n for n in notes)
