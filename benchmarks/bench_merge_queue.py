"""Batched merge queue with bisection vs merging and verifying one branch at a time.

16 unit branches, one of which breaks the tests; the verification command takes a
fixed time. Both runs use the real ``MergeQueue`` on identical fresh repositories:
``batch_size=16`` (ours) and ``batch_size=1`` (the serial queue). Reports the
verification runs and the wall time of each.

Goals: at most 1 + 2*ceil(log2 16) = 9 verification runs, and a wall-time ratio of at
least 1.7x over serial.
Run: ``uv run python benchmarks/bench_merge_queue.py``
"""

from __future__ import annotations

import math
import sys
import tempfile
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _bench import git, report  # noqa: E402

from engine.gitops import GitRepo, MergeQueue  # noqa: E402
from engine.store.db import Store  # noqa: E402

BRANCHES = 16
CULPRIT = 11
VERIFY_SECONDS = 0.25
VERIFY = (f"sleep {VERIFY_SECONDS}; "
          'for f in BROKEN*; do [ -e "$f" ] && { echo "test_x FAILED ($f)"; exit 1; }; done; echo passed')
MAX_RUNS = 1 + 2 * math.ceil(math.log2(BRANCHES))
GOAL_RATIO = 1.7


def make_target(root: Path) -> tuple[GitRepo, list[tuple[str, str]]]:
    """A small repo plus 16 unit branches off main, each adding one module."""
    path = root / "target"
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    for i in range(20):
        (path / f"lib{i}.py").write_text(f"X{i} = {i}\n")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "base")
    branches: list[tuple[str, str]] = []
    for n in range(BRANCHES):
        name = f"mc/unit/u{n}"
        git(path, "checkout", "-q", "-b", name, "main")
        (path / f"feature{n}.py").write_text(f"def feature_{n}():\n    return {n}\n")
        if n == CULPRIT:
            (path / "BROKEN_by_u11").write_text("this breaks the tests\n")
        git(path, "add", "-A")
        git(path, "commit", "-q", "-m", f"unit u{n}")
        branches.append((name, git(path, "rev-parse", "HEAD").strip()))
    git(path, "checkout", "-q", "main")
    repo = GitRepo(path)
    repo.ensure_green("main")
    return repo, branches


async def drain(repo: GitRepo, branches: list[tuple[str, str]], state: Path,
                batch_size: int) -> dict[str, float | int]:
    store = Store(state / "mission.db")
    queue = MergeQueue(repo, store, mission_id=None, verify_command=VERIFY, verify_timeout=60,
                       batch_size=batch_size, verify_dir=state / "verify")
    for name, head in branches:
        queue.submit(None, name, head)
    runs = promoted = failed = 0
    t0 = time.perf_counter()
    while queue.pending():
        outcome = await queue.run_once()
        runs += outcome.verifications
        promoted += len(outcome.promoted)
        failed += len(outcome.failed)
    wall = time.perf_counter() - t0
    store.close()
    return {"wall": wall, "runs": runs, "promoted": promoted, "failed": failed}


def main() -> None:
    results = {}
    for label, batch in (("queue", BRANCHES), ("serial", 1)):
        with tempfile.TemporaryDirectory(prefix=f"mc-bench-mq-{label}-") as tmp:
            repo, branches = make_target(Path(tmp))
            results[label] = anyio.run(drain, repo, branches, Path(tmp) / "state", batch)
        r = results[label]
        print(f"{label:7s} batch={batch:2d}: {r['runs']:2d} verification runs, {r['wall']:.2f}s, "
              f"{r['promoted']} promoted, {r['failed']} failed")
    ours, serial = results["queue"], results["serial"]
    assert ours["promoted"] == serial["promoted"] == BRANCHES - 1
    assert ours["failed"] == serial["failed"] == 1
    report(
        "merge_queue_16_branches_1_culprit", ours=ours["wall"], baseline=serial["wall"], unit="s",
        verifications_ours=ours["runs"], verifications_serial=serial["runs"],
        verify_seconds=VERIFY_SECONDS, max_verifications_goal=MAX_RUNS, goal_ratio=GOAL_RATIO,
        goal_met=ours["runs"] <= MAX_RUNS and serial["wall"] / ours["wall"] >= GOAL_RATIO,
    )


if __name__ == "__main__":
    main()
