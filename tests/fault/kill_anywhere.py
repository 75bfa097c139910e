"""Kill the demo mission at random moments, resume it, check every resume promise.

Not part of the pytest run (timing is random by design); run it after touching resume,
the pool, the queue or the controller:

    uv run python tests/fault/kill_anywhere.py --runs 12 --seed 1

Each run copies the demo, starts `mc mission --no-ui --yes`, SIGKILLs its process group
after a random delay (sometimes kills the resumed run once more), resumes to the end (or
starts it again when the kill came before the mission was recorded) and checks: the mission completed; the same units merged as in an uninterrupted run, in one
epoch (plus an empty failed one for each kill that cut a plan short); no unit promoted twice; `mc/green` passes
the demo's tests; the user's checkout is untouched; and after each kill, no process is left
running in the demo's folder (agents and verification commands die with mc). Exit status 1 if any run broke one.
The kill points in tests/e2e/test_resume.py came out of this loop.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
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
from tests.e2e.test_resume import merged_titles, unit_report  # noqa: E402


def start(config: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "mc_tui", "mission", "--config", str(config), "--no-ui", "--yes", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        start_new_session=True, cwd=ROOT,
    )


def one_run(folder: Path, delays: list[float], expected: list[str]) -> list[str]:
    """Kill after each delay, resume to the end; the broken promises (empty when all held)."""
    config = prepare_demo(folder)
    repo = config.parent / "repo"
    db = repo / ".git" / "mc" / "mission.db"
    problems = []
    for i, delay in enumerate(delays):
        proc = start(config, *(["--resume"] if i else []))
        time.sleep(delay)
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
        epochs = store.rows("epochs")
        cut_plans = [e for e in epochs[:-1] if e["status"] == "failed"
                     and not store.rows("units", "epoch_id = ?", (e["id"],))]
        if not epochs or epochs[-1]["status"] != "completed" or len(cut_plans) != len(epochs) - 1:
            problems.append(f"epochs: {[e['status'] for e in epochs]} (only plans cut short "
                            "may precede the one completed epoch)")
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-delay", type=float, default=9.0,
                        help="latest first kill, in seconds (the demo takes about 10)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="mc-kill-") as tmp:
        print("uninterrupted run for the expected result ...", flush=True)
        baseline = prepare_demo(Path(tmp) / "baseline")
        run_mc("mission", "--config", str(baseline), "--no-ui", "--yes", timeout=300)
        expected = merged_titles(baseline.parent / "repo" / ".git" / "mc" / "mission.db")
        failures = 0
        for n in range(args.runs):
            delays = [rng.uniform(0.3, args.max_delay)]
            if rng.random() < 0.4:
                delays.append(rng.uniform(0.2, 4.0))  # kill the resumed run too
            problems = one_run(Path(tmp) / f"run-{n}", delays, expected)
            failures += bool(problems)
            shown = ", ".join(f"{d:.2f}s" for d in delays)
            print(f"run {n}: kills after {shown}: " + ("ok" if not problems else "BROKEN"), flush=True)
            for problem in problems:
                print("  " + problem.replace("\n", "\n  "), flush=True)
    print(f"{args.runs - failures}/{args.runs} runs kept every promise")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
