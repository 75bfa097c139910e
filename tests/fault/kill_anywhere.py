"""Kill the demo mission at every named point and at random moments, resume it, check every
resume promise.

Run it after touching resume, the pool, the queue or the pipeline:

    uv run python tests/fault/kill_anywhere.py                  # the 26 named points, 2 at a time
    uv run python tests/fault/kill_anywhere.py --points 0 --runs 12 --seed 1   # random only

Named points (``tests/e2e/test_resume.py`` ``KILL_POINTS``, which pytest also runs one by one)
SIGKILL the mission's process group when the n-th event of a kind is in the store: planning
(mission recorded, baseline, root and sub-planners, ambition gate), dispatch (units inserted,
workers, mid-session), review, the merge queue (submitted, batch verification, conflicts),
fixup (running, candidates scored, a winner decided), promotions, the push gate, the push,
the epoch's feedback and the objective check. Random runs SIGKILL after a random delay
(sometimes the resumed run once more). Each run then resumes to the end (or starts again when
the kill came before the mission was recorded) and checks: the mission completed; the same
units merged as in an uninterrupted run, in one epoch (plus an empty failed one for each kill
that cut a plan short); no unit promoted twice; `mc/green` passes the demo's tests; the user's
checkout is untouched; and after each kill, no process is left running in the demo's folder
(agents and verification commands die with mc). Exit status 1 if any run broke one.

``--speculative`` runs every mission with the speculative merge queue stretched so that
several candidates are in flight (``[merge_queue] batch_size = 1``, ``speculative_depth = 2``,
``verify_slots = 2``, and a verification that sleeps 1 s first, through ``MC_...``
variables) and aims the first kill of every other random run *inside* a speculative verification: it watches the store and kills a random 0-0.3 s
after a verification built on an unpromoted candidate has started (random delay when none
comes). The uninterrupted run must itself reach the speculative states, or the loop says so.

``--precheck`` runs every mission with prechecks (on by default; the demo's config turns them
off): a unit is verified in its worktree (or skipped when the queue is idle) and test-merged
onto ``mc/green`` when its agent is done, and may go to fixup from there.

``--stacked`` runs every mission with stacked branches (``[scheduler] stacked_branches``: the
demo's "Add variance and standard deviation" starts on "Add mean and median" while that one is
still in the merge queue); the uninterrupted run must itself have stacked a unit.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import random
import shlex
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from engine.demo import prepare_demo  # noqa: E402
from engine.store import Store  # noqa: E402
from tests.e2e.conftest import git, leftover_processes, run_mc  # noqa: E402
from tests.e2e.test_resume import (  # noqa: E402
    KILL_POINTS,
    PLANNING_POINTS,
    epoch_problem,
    merged_titles,
    unit_report,
    wait_for_event,
)

AIMED = "speculative"  # a kill inside a speculative verification (--speculative)
Kill = float | tuple[str, int] | str  # seconds after the start, the n-th event of a kind, or AIMED


def start(config: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "mc_tui", "mission", "--config", str(config), "--no-ui", "--yes", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        start_new_session=True, cwd=ROOT,
    )


SPECULATIVE_ENV = {
    "MC_MERGE_QUEUE__BATCH_SIZE": "1", "MC_MERGE_QUEUE__SPECULATIVE_DEPTH": "2",
    "MC_MERGE_QUEUE__VERIFY_SLOTS": "2",
    # the demo's suite with a second's sleep first, so that branches queue up behind it
    "MC_TARGET__VERIFICATION__COMMAND":
        f"sleep 1 && {shlex.quote(sys.executable)} -m unittest discover -s tests -t .",
}


def speculative_running(db: Path) -> bool:
    """A verification of a speculative candidate is running right now."""
    if not db.exists():
        return False
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.2)
        try:
            rows = conn.execute(
                "SELECT j.data FROM queue_journal j WHERE j.step = 'verify' AND j.phase = 'intent' "
                "AND j.data LIKE '%\"speculative\": true%'").fetchall()
            ids = [json.loads(r[0]).get("verification_id") for r in rows]
            return any(conn.execute("SELECT 1 FROM verifications WHERE id = ? AND status = 'running'",
                                    (vid,)).fetchone() for vid in ids)
        finally:
            conn.close()
    except sqlite3.Error:
        return False


def wait_for_speculation(db: Path, proc: subprocess.Popen[bytes], limit: float,
                         rng: random.Random) -> bool:
    """Until a speculative verification runs (then a random 0-0.3 s more): True; False when
    none came within ``limit`` seconds or the mission ended."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and proc.poll() is None:
        if speculative_running(db):
            time.sleep(rng.uniform(0.0, 0.3))
            return True
        time.sleep(0.02)
    return False


def speculative_states(db: Path) -> dict[str, int]:
    """How often a finished mission went through each speculative state."""
    store = Store(db)
    try:
        journal = store.rows("queue_journal")
        return {
            "speculative verifications": sum(
                1 for r in journal if r["step"] == "verify" and r["phase"] == "intent"
                and json.loads(r["data"] or "{}").get("speculative")),
            "discarded": sum(1 for r in journal if r["step"] == "discard"),
            "suspects": sum(1 for r in journal if (r["step"], r["phase"]) == ("speculate", "suspect")),
            "splits": sum(1 for r in journal if (r["step"], r["phase"]) == ("speculate", "split")),
        }
    finally:
        store.close()


def one_run(folder: Path, kills: list[Kill], expected: list[str]) -> list[str]:
    """Kill at each point, resume to the end; the broken promises (empty when all held)."""
    config = prepare_demo(folder)
    repo = config.parent / "repo"
    db = repo / ".git" / "mc" / "mission.db"
    problems = []
    for i, kill in enumerate(kills):
        proc = start(config, *(["--resume"] if i else []))
        if isinstance(kill, tuple):
            if not wait_for_event(db, kill[0], kill[1], proc, timeout=120):
                problems.append(f"the mission never reached {kill[0]} #{kill[1]}")
        elif kill == AIMED:  # no speculative verification came: killed at the end, reported
            if not wait_for_speculation(db, proc, 30.0, random.Random(len(problems))):
                print(f"{folder.name}: aimed, but no speculative verification came", flush=True)
        else:
            time.sleep(kill)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        left = leftover_processes(folder)
        if left:
            problems.append(f"after kill {i + 1}, processes were left running: {left}")
    result = run_mc("mission", "--config", str(config), "--no-ui", "--yes", "--resume", timeout=300)
    if "nothing to resume" in result.stdout + result.stderr and not _missions(db):
        # killed before the mission was recorded: the user just starts it again
        result = run_mc("mission", "--config", str(config), "--no-ui", "--yes", timeout=300)
    elif "nothing to resume" in result.stdout + result.stderr:
        result = subprocess.CompletedProcess(result.args, 0, "", "")  # it had finished already
    if result.returncode != 0:
        problems.append(f"the rerun exited {result.returncode}: {(result.stdout + result.stderr)[-600:]}")
    store = Store(db)
    try:
        missions = [m["status"] for m in store.rows("missions")]
        if missions != ["completed"]:
            problems.append(f"missions: {missions}")
        if merged_titles(db) != expected:
            problems.append("merged units differ:\n" + unit_report(store))
        planning = any(not isinstance(k, tuple) or k in PLANNING_POINTS for k in kills)
        problem = epoch_problem(store, cut_plans_allowed=planning)
        if problem:
            problems.append(f"{problem} (only plans cut short may precede the one completed "
                            "epoch, and only when a kill came while planning)")
        promoted = [m["unit_id"] for m in store.rows("merges", "status = 'promoted'") if m["unit_id"]]
        if len(promoted) != len(set(promoted)):
            problems.append(f"a unit was promoted twice: {promoted}")
    finally:
        store.close()
    green = folder / "green"
    subprocess.run(["git", "clone", "-q", "--branch", "mc/green", str(repo), str(green)], check=True)
    tests = subprocess.run([sys.executable, "-m", "unittest", "discover", "-s", "tests", "-t", "."],
                           cwd=green, capture_output=True, text=True)
    if tests.returncode != 0:
        problems.append("mc/green fails the demo's tests:\n" + tests.stderr[-600:])
    if git(repo, "status", "--porcelain") or git(repo, "rev-list", "--count", "main") != "1":
        problems.append("the user's checkout changed")
    return problems


def _missions(db: Path) -> list[str]:
    if not db.exists():
        return []
    store = Store(db)
    try:
        return [m["status"] for m in store.rows("missions")]
    finally:
        store.close()


def plan_runs(points: int, runs: int, seed: int, max_delay: float,
              aimed: bool = False) -> list[list[Kill]]:
    """The first ``points`` named kill points (one run each), then ``runs`` random runs (with
    ``aimed``, every other one's first kill inside a speculative verification)."""
    rng = random.Random(seed)
    plans: list[list[Kill]] = [[point] for point in KILL_POINTS[:points]]
    for n in range(runs):
        kills: list[Kill] = [AIMED if aimed and n % 2 == 0 else rng.uniform(0.3, max_delay)]
        if rng.random() < 0.4:
            kills.append(rng.uniform(0.2, 4.0))  # kill the resumed run too
        plans.append(kills)
    return plans


def _shown(kills: list[Kill]) -> str:
    return ", ".join(f"{k[0]} #{k[1]}" if isinstance(k, tuple) else
                     "in a speculative verification" if k == AIMED else f"{k:.2f}s" for k in kills)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=len(KILL_POINTS),
                        help=f"how many of the {len(KILL_POINTS)} named kill points to run")
    parser.add_argument("--runs", type=int, default=0, help="random runs after the named points")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=2, help="runs at once")
    parser.add_argument("--max-delay", type=float, default=9.0,
                        help="latest first random kill, in seconds (the demo takes about 10)")
    parser.add_argument("--speculative", action="store_true",
                        help="stretch the speculative merge queue and aim kills inside it")
    parser.add_argument("--stacked", action="store_true",
                        help="stacked branches on ([scheduler] stacked_branches)")
    parser.add_argument("--precheck", action="store_true",
                        help="prechecks on ([target.verification] precheck; the demo turns "
                        "them off to show the queue's bisection)")
    args = parser.parse_args()
    if args.speculative:
        os.environ.update(SPECULATIVE_ENV)  # the missions below inherit it
    if args.stacked:
        os.environ["MC_SCHEDULER__STACKED_BRANCHES"] = "true"
    if args.precheck:
        os.environ["MC_TARGET__VERIFICATION__PRECHECK"] = "true"
    plans = plan_runs(args.points, args.runs, args.seed, args.max_delay, aimed=args.speculative)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mc-kill-") as tmp:
        print("uninterrupted run for the expected result ...", flush=True)
        baseline = prepare_demo(Path(tmp) / "baseline")
        run_mc("mission", "--config", str(baseline), "--no-ui", "--yes", timeout=300)
        baseline_db = baseline.parent / "repo" / ".git" / "mc" / "mission.db"
        expected = merged_titles(baseline_db)
        if args.speculative:
            reached = speculative_states(baseline_db)
            print(f"the uninterrupted run reached: {reached}", flush=True)
            if not reached.get("speculative verifications"):
                print("the speculative queue was never stretched: nothing to kill in")
                return 1
        if args.stacked:
            with sqlite3.connect(baseline_db) as db:
                stacked = db.execute("SELECT COUNT(*) FROM units WHERE stacked_on IS NOT NULL"
                                     ).fetchone()[0]
            print(f"the uninterrupted run stacked {stacked} unit(s)", flush=True)
            if not stacked:
                print("no unit was stacked: nothing to test")
                return 1
        failures = 0
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            futures = {pool.submit(one_run, Path(tmp) / f"run-{n}", kills, expected): (n, kills)
                       for n, kills in enumerate(plans)}
            for future in concurrent.futures.as_completed(futures):
                n, kills = futures[future]
                problems = future.result()
                failures += bool(problems)
                print(f"run {n}: kill at {_shown(kills)}: " + ("ok" if not problems else "BROKEN"),
                      flush=True)
                for problem in problems:
                    print("  " + problem.replace("\n", "\n  "), flush=True)
    print(f"{len(plans) - failures}/{len(plans)} runs kept every promise "
          f"in {time.monotonic() - started:.0f}s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
