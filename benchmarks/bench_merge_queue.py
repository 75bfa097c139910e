"""Speculative merge queue vs the batched queue vs merging one branch at a time.

16 unit branches, one of which (u11) breaks the tests; the verification command takes
1 s. All runs use the real ``MergeQueue`` on identical fresh repositories:

* ours: the speculative queue, ``batch_size=4``, ``speculative_depth=1``, 2 verify slots
  (the defaults of ``[merge_queue]``);
* batch: ``batch_size=16``, ``speculative_depth=0`` (batch + bisect, one verification at a
  time: the queue before speculation);
* serial: ``batch_size=1``, ``speculative_depth=0``.

Prints the verification runs (and speculative runs discarded) and the wall time of each.
Goal: ours at least 3x faster than serial. ``--sweep`` also measures depths 0-3 with batch
sizes 2, 4, 8 on 2 slots (how the defaults were chosen, docs/gitops.md).
Run: ``uv run python benchmarks/bench_merge_queue.py [--sweep]``
"""

from __future__ import annotations

import argparse
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
VERIFY_SECONDS = 1.0
VERIFY = (f"sleep {VERIFY_SECONDS}; "
          'for f in BROKEN*; do [ -e "$f" ] && { echo "test_x FAILED ($f)"; exit 1; }; done; echo passed')
SLOTS = 2
GOAL_RATIO = 3.0
OURS = {"batch": 4, "depth": 1, "slots": SLOTS}
BATCH = {"batch": BRANCHES, "depth": 0, "slots": 1}
SERIAL = {"batch": 1, "depth": 0, "slots": 1}


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
                batch: int, depth: int, slots: int) -> dict[str, float | int]:
    store = Store(state / "mission.db")
    queue = MergeQueue(repo, store, mission_id=None, verify_command=VERIFY, verify_timeout=60,
                       batch_size=batch, verify_dir=state / "verify", speculative_depth=depth,
                       verify_slots=slots)
    for name, head in branches:
        queue.submit(None, name, head)
    runs = discarded = promoted = failed = 0
    t0 = time.perf_counter()
    while queue.pending():
        outcome = await queue.run_once()
        runs += outcome.verifications
        discarded += outcome.discarded
        promoted += len(outcome.promoted)
        failed += len(outcome.failed)
    wall = time.perf_counter() - t0
    store.close()
    return {"wall": wall, "runs": runs, "discarded": discarded, "promoted": promoted,
            "failed": failed}


def measure(label: str, batch: int, depth: int, slots: int) -> dict[str, float | int]:
    with tempfile.TemporaryDirectory(prefix=f"mc-bench-mq-{label}-") as tmp:
        repo, branches = make_target(Path(tmp))
        r = anyio.run(drain, repo, branches, Path(tmp) / "state", batch, depth, slots)
    print(f"{label:7s} batch={batch:2d} depth={depth} slots={slots}: {r['runs']:2d} verification "
          f"runs (+{r['discarded']} discarded), {r['wall']:.2f}s, {r['promoted']} promoted, "
          f"{r['failed']} failed", flush=True)
    assert r["promoted"] == BRANCHES - 1 and r["failed"] == 1, r
    return r


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", action="store_true",
                        help="also measure depths 0-3 x batch sizes 2, 4, 8 on 2 slots")
    args = parser.parse_args()
    if args.sweep:
        for batch in (2, 4, 8):
            for depth in range(4):
                measure("sweep", batch, depth, SLOTS)
    serial = measure("serial", **SERIAL)
    batched = measure("batch", **BATCH)
    ours = measure("ours", **OURS)
    report(
        "merge_queue_16_branches_1_culprit", ours=ours["wall"], baseline=serial["wall"], unit="s",
        verifications_ours=ours["runs"], discarded_ours=ours["discarded"],
        verifications_serial=serial["runs"], wall_batch_depth0=round(batched["wall"], 3),
        verifications_batch_depth0=batched["runs"], verify_seconds=VERIFY_SECONDS,
        verify_slots=SLOTS, speculative_depth=OURS["depth"], batch_size=OURS["batch"],
        goal_ratio=GOAL_RATIO, goal_met=serial["wall"] / ours["wall"] >= GOAL_RATIO,
    )


if __name__ == "__main__":
    main()
