"""Engine overhead per unit: plan -> dispatch -> queue -> verify -> promote, with agents and a
verification that take no time, on a generated repository of about 1,000 files.

Everything real runs (store, worktree pool, in-memory merges, promotion, events); the agents are
the scripted backend writing one file and committing, and the verification command is `true`.
Reports ms of engine time per unit at 1, 4 and 8 workers and units per minute, for a second
mission on the same repository (the steady state: the worktree pool exists) and, as an extra
figure, for the first one (which also creates the pool).

    uv run python benchmarks/bench_engine_overhead.py

Goal: under 100 ms of engine time per unit (the baseline figure below is that goal).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._bench import git, report  # noqa: E402
from engine.config import load_config  # noqa: E402
from engine.controller import Controller  # noqa: E402
from engine.store import Store  # noqa: E402

FILES = 1000
PARTS = 4
LEAVES_PER_PART = 6
GOAL_MS_PER_UNIT = 100.0


def make_repo(root: Path) -> Path:
    repo = root / "repo"
    for i in range(FILES):
        path = repo / f"pkg{i % 20}" / f"mod{i}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"VALUE_{i} = {i}\n")
    git(repo.parent, "init", "-q", "-b", "main", str(repo))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "generated")
    return repo


def cassette() -> str:
    parts = [
        {"title": f"Part {p}", "description": "a part", "files_hint": [f"gen/p{p}/"],
         "acceptance_criteria": ["done"], "leaf": False}
        for p in range(PARTS)
    ]
    entries = [
        '[[interaction]]\nrole = "planner"\nmatch = "Decompose the objective"\n'
        f"actions = [{{ type = \"text\", text = '{json.dumps({'units': parts})}' }}]\n"
    ]
    for p in range(PARTS):
        leaves = [
            {"title": f"Unit {p}-{k}", "description": "write one file",
             "files_hint": [f"gen/p{p}/u{k}.txt"], "acceptance_criteria": ["file exists"], "leaf": True}
            for k in range(LEAVES_PER_PART)
        ]
        entries.append(
            f'[[interaction]]\nrole = "planner"\nmatch = "- title: Part {p}\\n"\n'
            f"actions = [{{ type = \"text\", text = '{json.dumps({'units': leaves})}' }}]\n"
        )
    entries.append(
        '[[interaction]]\nrole = "ambition"\n'
        "actions = [{ type = \"text\", text = '{\"score\": 9, \"feedback\": \"ok\"}' }]\n"
    )
    entries.append(
        '[[interaction]]\nrole = "objective_check"\n'
        "actions = [{ type = \"text\", text = '{\"met\": true, \"feedback\": \"ok\"}' }]\n"
    )
    entries.append(
        '[[interaction]]\nrole = "worker"\n'
        'actions = [{ type = "write", path = "gen/{{unit_id}}.txt", content = "{{unit_title}}\\n" },'
        ' { type = "commit", message = "{{unit_title}}" }]\n'
    )
    return "\n".join(entries)


CONFIG = """
[target]
path = "repo"
objective = "benchmark"
[target.verification]
command = "true"
[scheduler.parallel]
num_workers = {workers}
[planner]
max_depth = 2
max_children_per_node = 8
[review]
gate_completion = false
[hitl]
enabled = false
[merge_queue]
batch_size = 8
[agent]
backend = "scripted"
cassette = "cassette.toml"
"""


def run_mission(root: Path, objective: str) -> tuple[float, int]:
    config = load_config(root / "mission-control.toml", overrides={"target": {"objective": objective}})
    store = Store(config.db_path())
    controller = Controller(config, store)
    started = time.perf_counter()
    outcome = anyio.run(controller.run)
    elapsed = time.perf_counter() - started
    merged = sum(1 for u in store.units(outcome.mission_id) if u["is_leaf"] and u["status"] == "merged")
    store.close()
    if outcome.status != "completed" or merged != PARTS * LEAVES_PER_PART:
        raise SystemExit(f"benchmark mission did not complete: {outcome.status} {outcome.reason}")
    return elapsed, merged


def run_once(workers: int) -> tuple[float, float, int]:
    """(cold seconds, warm seconds, units): a first mission creates the worktree pool, the
    second one on the same repository measures the steady state."""
    with tempfile.TemporaryDirectory(prefix="mc-bench-engine-") as tmp:
        root = Path(tmp)
        make_repo(root)
        (root / "cassette.toml").write_text(cassette())
        (root / "mission-control.toml").write_text(CONFIG.format(workers=workers))
        cold, _ = run_mission(root, "benchmark, first mission")
        warm, units = run_mission(root, "benchmark, second mission")
        return cold, warm, units


def main() -> None:
    results: dict[int, dict[str, float]] = {}
    for workers in (1, 4, 8):
        cold, warm, units = run_once(workers)
        ms = warm * 1000 / units
        results[workers] = {
            "ms_per_unit": round(ms, 1),
            "units_per_min": round(units / warm * 60, 1),
            "cold_ms_per_unit": round(cold * 1000 / units, 1),
        }
        print(f"{workers} worker(s): {units} units in {warm:.2f}s = {ms:.1f} ms/unit, "
              f"{units / warm * 60:.0f} units/min (first mission, creating the pool: "
              f"{cold * 1000 / units:.1f} ms/unit)")
    ours = results[4]["ms_per_unit"]
    report(
        "engine_overhead_per_unit", ours=ours, baseline=GOAL_MS_PER_UNIT, unit="ms/unit",
        files=FILES, units=PARTS * LEAVES_PER_PART,
        ms_per_unit={str(k): v["ms_per_unit"] for k, v in results.items()},
        units_per_min={str(k): v["units_per_min"] for k, v in results.items()},
        cold_ms_per_unit={str(k): v["cold_ms_per_unit"] for k, v in results.items()},
        goal_met=all(v["ms_per_unit"] < GOAL_MS_PER_UNIT for v in results.values()),
    )


if __name__ == "__main__":
    main()
