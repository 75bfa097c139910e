"""Shared helpers for the benchmark scripts.

Every benchmark prints, as its last line, one JSON object:
``{"benchmark", "ours", "baseline", "unit", "ratio", "goal_met", ...}``, where ``ratio`` is how many
times better ours is than the baseline (``baseline / ours`` for times, ``ours / baseline`` for
rates, see ``higher_is_better``).
"""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
from pathlib import Path
from typing import Any

BENCH_ENV = {
    "GIT_AUTHOR_NAME": "Bench", "GIT_AUTHOR_EMAIL": "bench@localhost",
    "GIT_COMMITTER_NAME": "Bench", "GIT_COMMITTER_EMAIL": "bench@localhost",
}


def report(benchmark: str, *, ours: float, baseline: float, unit: str, goal_met: bool,
           higher_is_better: bool = False, **extra: Any) -> dict[str, Any]:
    """Print the result line (JSON, last line of output) and return it."""
    if higher_is_better:
        ratio = round(ours / baseline, 2) if baseline else None
    else:
        ratio = round(baseline / ours, 2) if ours else None
    result = {"benchmark": benchmark, "ours": round(ours, 4), "baseline": round(baseline, 4),
              "unit": unit, "ratio": ratio, "goal_met": bool(goal_met), **extra}
    print(json.dumps(result), flush=True)
    return result


def median(values: list[float]) -> float:
    return statistics.median(values)


def git(cwd: Path, *args: str, input: bytes | None = None) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, input=input, capture_output=True,
                          env={**os.environ, **BENCH_ENV})
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {proc.stderr.decode(errors='replace')}")
    return proc.stdout.decode()


def generate_repo(path: Path, *, files: int, commits: int, changes_per_commit: int = 25,
                  seed: int = 7) -> list[str]:
    """A repo with ``files`` files and ``commits`` commits on main, built with fast-import.

    Returns the commit shas, oldest first. The working tree is checked out at the tip.
    """
    rng = random.Random(seed)
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    names = [f"pkg{i // 100:02d}/mod{i % 100:03d}.py" for i in range(files)]
    chunks: list[bytes] = []

    def inline(name: str, text: str) -> None:
        data = text.encode()
        chunks.append(f"M 100644 inline {name}\ndata {len(data)}\n".encode() + data + b"\n")

    for n in range(1, commits + 1):
        msg = f"commit {n}".encode()
        chunks.append(
            f"commit refs/heads/main\nmark :{n}\ncommitter Bench <bench@localhost> "
            f"{1_700_000_000 + n * 60} +0000\ndata {len(msg)}\n".encode() + msg + b"\n"
        )
        if n > 1:
            chunks.append(f"from :{n - 1}\n".encode())
        touched = names if n == 1 else rng.sample(names, changes_per_commit)
        for name in touched:
            body = "".join(f"value_{k} = {rng.randint(0, 10**6)}  # line {k}\n" for k in range(20))
            inline(name, f"# {name} @ {n}\n{body}")
        chunks.append(b"\n")
    git(path, "fast-import", "--quiet", input=b"".join(chunks))
    git(path, "checkout", "-q", "-f", "main")
    return git(path, "rev-list", "--reverse", "main").split()
