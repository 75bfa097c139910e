"""Handing a worker a clean workspace at a new base commit.

On a generated repo of 5,000 files and 200 commits, each round moves a workspace to
a different base commit after an "agent" dirtied it (edits, deletions, untracked
files), and times three ways of getting a clean checkout at the new base:

* ours: ``WorkspacePool.acquire`` + ``release`` reusing one pygit2 worktree (it rewrites
  only the files that differ, in place: see ``engine/gitops/checkout.py``);
* baseline: ``git clone --shared`` + checkout into a fresh directory (the original tool);
* also shown: a fresh ``git worktree add --detach``.

Goal: reuse at least 5x faster than clone --shared.
Run: ``uv run python benchmarks/bench_workspace.py``
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _bench import generate_repo, git, median, report  # noqa: E402

from engine.gitops import GitRepo, WorkspacePool, worktrees  # noqa: E402

FILES = 5000
COMMITS = 200
ROUNDS = 6
WORKTREE_ROUNDS = 2  # a fresh worktree add is slow; fewer rounds keep the run short
GOAL = 5.0


def dirty(path: Path, round_no: int) -> None:
    """What an agent leaves behind: edits, a deletion, untracked files and folders."""
    for i in range(10):
        target = path / f"pkg{i:02d}" / f"mod{round_no:03d}.py"
        if target.exists():
            target.write_text(f"# edited by agent {round_no}\n")
    (path / "pkg20" / "mod000.py").unlink(missing_ok=True)
    scratch = path / "scratch" / f"r{round_no}"
    scratch.mkdir(parents=True, exist_ok=True)
    for i in range(20):
        (scratch / f"tmp{i}.txt").write_text("x" * 100)


def time_clone(src: Path, scratch: Path, base: str, n: int) -> float:
    dest = scratch / f"clone-{n}"
    t0 = time.perf_counter()
    git(scratch, "clone", "-q", "--shared", "--no-checkout", str(src), str(dest))
    git(dest, "checkout", "-q", "-b", f"mc/unit/clone-{n}", base)
    elapsed = time.perf_counter() - t0
    shutil.rmtree(dest)
    return elapsed


def time_worktree_add(src: Path, scratch: Path, base: str, n: int) -> float:
    dest = scratch / f"wt-{n}"
    t0 = time.perf_counter()
    git(src, "worktree", "add", "-q", "--detach", str(dest), base)
    elapsed = time.perf_counter() - t0
    git(src, "worktree", "remove", "--force", str(dest))
    return elapsed


FAST_PATH: list[bool] = []


def _count_fast_path() -> None:
    """Record whether each hand-off took the fast path (it must, for the figure to mean it)."""
    real = worktrees.fast_clean_checkout

    def spy(wt, commit):  # type: ignore[no-untyped-def]
        FAST_PATH.append(real(wt, commit))
        return FAST_PATH[-1]

    worktrees.fast_clean_checkout = spy


async def measure(src: Path, root: Path, bases: list[str]) -> dict[str, list[float]]:
    """Rounds interleave the three methods, so background load hits them alike."""
    _count_fast_path()
    pool = WorkspacePool(GitRepo(src), root / "pool", size=1)
    pool.repair()
    t0 = time.perf_counter()
    ws = await pool.acquire("mc/unit/bench-warm", bases[0])  # creates the worktree
    times: dict[str, list[float]] = {"first": [time.perf_counter() - t0], "pool": [],
                                     "clone": [], "worktree": []}
    dirty(ws.path, 0)
    await pool.release(ws)
    for n, base in enumerate(bases[1:], start=1):
        t0 = time.perf_counter()
        ws = await pool.acquire(f"mc/unit/bench-{n}", base)
        await pool.release(ws)
        times["pool"].append(time.perf_counter() - t0)
        assert git(ws.path, "status", "--porcelain") == "", "workspace not clean"
        assert git(ws.path, "rev-parse", "HEAD").strip() == base
        dirty(ws.path, n)
        times["clone"].append(time_clone(src, root, base, n))
        if n <= WORKTREE_ROUNDS:
            times["worktree"].append(time_worktree_add(src, root, base, n))
    return times


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="mc-bench-ws-") as tmp:
        root = Path(tmp)
        src = root / "target"
        t0 = time.perf_counter()
        commits = generate_repo(src, files=FILES, commits=COMMITS)
        print(f"generated {len(commits)} commits x {FILES} files in {time.perf_counter() - t0:.1f}s")
        bases = [commits[i] for i in range(COMMITS - 1, COMMITS - 1 - 10 * (ROUNDS + 1), -10)]
        times = anyio.run(measure, src, root, bases)
    ours, first = times["pool"], times["first"][0]
    ours_ms, clone_ms, wt_ms = (median(times[k]) * 1000 for k in ("pool", "clone", "worktree"))
    print(f"pool reuse          median {ours_ms:8.1f} ms   (first acquire, creating it: {first * 1000:.0f} ms)")
    print(f"clone --shared      median {clone_ms:8.1f} ms")
    print(f"git worktree add    median {wt_ms:8.1f} ms")
    report(
        "workspace_handoff", ours=ours_ms, baseline=clone_ms, unit="ms",
        files=FILES, commits=COMMITS, rounds=len(ours), worktree_add_ms=round(wt_ms, 2),
        ratio_vs_worktree_add=round(wt_ms / ours_ms, 2), first_acquire_ms=round(first * 1000, 1),
        goal_ratio=GOAL, goal_met=clone_ms / ours_ms >= GOAL,
        fast_path_rounds=sum(FAST_PATH[1:]),  # the first acquire creates the worktree
    )


if __name__ == "__main__":
    main()
