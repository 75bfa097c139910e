"""Measured effect of learning: a recurring trap, with memory and the context store on vs off.

The target is a small Python project whose verification (unittest) requires every module
under ``app/`` to start with ``# SPDX-License-Identifier: MIT``. The scenario is MISSIONS
missions in a row on the same repository and store, each adding one module ``app/mN.py``.
Everything real runs (store, worktrees, merge queue, verification, fixup rounds, promotion);
the agents are the scripted backend, and their cassette reads the prompt:

- a worker whose prompt carries the convention (the "What earlier attempts learned" section
  mentions ``SPDX-License-Identifier``) writes the header; any other worker does not, so its
  change fails verification in the merge queue;
- a fixup agent whose prompt carries the verification failure adds the header, and reports
  the convention in its result marker (``conventions``, scope ``app/``).

So nothing is told to the second worker except through the mechanisms under test: episodic
memory (the first unit's episode: "needed a fixup after: ... must start with # SPDX...") and
the context store (the fixup's reported convention, in scope for ``app/``). With them off
(``[episodic_memory] enabled = false``, ``[plugins.context_store] enabled = false``) every
mission falls into the trap again.

Two more runs switch on one mechanism at a time (reported as extras: each alone must carry
the lesson too). Measured per mode: failed attempts (agent sessions that failed, plus merge candidates that
failed verification: each costs a fixup round) and cost per merged unit (all agent cost of
the missions / units merged). Reports the failed-attempts ratio (off / on) as the figure and
the cost ratio as an extra; the goal is met when both are lower with learning on.

    uv run python benchmarks/bench_learning.py
"""

from __future__ import annotations

import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._bench import report  # noqa: E402
from benchmarks._missions import (  # noqa: E402
    CHECKS,
    make_repo,
    merged_units,
    reflection,
    run_mission,
    write_config,
)

MISSIONS = 4
HEADER = "# SPDX-License-Identifier: MIT"
WORKER_COST = 0.10
FIXUP_COST = 0.10
HEADER_TEST = f'''import pathlib
import unittest

HEADER = "{HEADER}"


class Headers(unittest.TestCase):
    def test_every_app_module_has_the_header(self):
        for p in sorted(pathlib.Path("app").glob("*.py")):
            text = p.read_text()
            self.assertTrue(text.startswith(HEADER), f"{{p}} must start with {{HEADER}}")
'''


def cassette(n: int) -> str:
    """Mission n's agents: the planner, and workers and fixups that follow what they read."""
    module = f"app/m{n}.py"
    title = f"Add module m{n}"
    body = f"def m{n}():\\n    return {n}\\n"
    plan = ('{"units": [{"title": "' + title + '", "description": "A function m' + str(n)
            + ' returning ' + str(n) + '.", "files_hint": ["' + module + '"], '
            '"acceptance_criteria": ["tests pass"], "leaf": true}]}')
    marker = ('<mc-result>{"status": "completed", "summary": "added the header", '
              '"conventions": [{"text": "every module under app/ must start with the line '
              + HEADER + '", "paths": ["app/"]}]}</mc-result>')
    return textwrap.dedent(f'''
    [[interaction]]
    role = "planner"
    actions = [{{ type = "text", text = '{plan}' }}]
    ''') + CHECKS + textwrap.dedent(f'''
    # the worker follows the convention only when its prompt carries it
    [[interaction]]
    role = "worker"
    match = "(?s)What earlier attempts learned.*SPDX-License-Identifier"
    cost_usd = {WORKER_COST}
    actions = [
      {{ type = "write", path = "{module}", content = "{HEADER}\\n{body}" }},
      {{ type = "commit", message = "{title}" }},
    ]

    [[interaction]]
    role = "worker"
    cost_usd = {WORKER_COST}
    actions = [
      {{ type = "write", path = "{module}", content = "{body}" }},
      {{ type = "commit", message = "{title}" }},
    ]

    # the fixup reads the verification failure, adds the header and reports the convention
    [[interaction]]
    role = "fixup"
    match = "must start with # SPDX-License-Identifier"
    cost_usd = {FIXUP_COST}
    actions = [
      {{ type = "write", path = "{module}", content = "{HEADER}\\n{body}" }},
      {{ type = "commit", message = "fixup: header" }},
      {{ type = "text", text = '{marker}' }},
    ]
    ''') + reflection("header missing")


def learning_config(root: Path, n: int, memory: bool, context: bool) -> Path:
    (root / "cassette.toml").write_text(cassette(n))
    off = ("" if memory else "[episodic_memory]\nenabled = false\n") + (
        "" if context else "[plugins.context_store]\nenabled = false\n")
    return write_config(root, name="bench-learning",
                        objective=f"Add module m{n}: a function m{n} returning {n}",
                        workers=1, max_rounds=2, fixup_max_attempts=2, extra=off)


def run_scenario(memory: bool, context: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="mc-bench-learning-") as tmp:
        root = Path(tmp)
        make_repo(root, {"app/__init__.py": f"{HEADER}\n", "tests/test_headers.py": HEADER_TEST})
        failed_attempts = 0
        merged = 0
        cost = 0.0
        started = time.perf_counter()
        for n in range(1, MISSIONS + 1):
            run = run_mission(learning_config(root, n, memory, context))
            store, mid = run.store, run.mission_id
            merged += merged_units(store, mid)
            failed_attempts += store.query(
                "SELECT COUNT(*) AS n FROM attempts WHERE mission_id = ? AND unit_id IS NOT NULL "
                "AND status != 'completed'", (mid,))[0]["n"]
            failed_attempts += store.query(  # candidates that failed verification
                "SELECT COUNT(*) AS n FROM events WHERE mission_id = ? AND kind = 'fixup.started'",
                (mid,))[0]["n"]
            cost += store.mission_cost(mid)
            store.close()
        return {"failed_attempts": failed_attempts, "merged": merged, "cost": cost,
                "cost_per_merged": cost / merged if merged else float("inf"),
                "seconds": time.perf_counter() - started}


def main() -> None:
    off = run_scenario(memory=False, context=False)
    on = run_scenario(memory=True, context=True)
    memory_only = run_scenario(memory=True, context=False)
    context_only = run_scenario(memory=False, context=True)
    for name, r in (("learning off", off), ("learning on", on), ("memory only", memory_only),
                    ("context only", context_only)):
        print(f"{name:13s}: {r['merged']}/{MISSIONS} units merged, {r['failed_attempts']} failed "
              f"attempts, ${r['cost']:.2f} total, ${r['cost_per_merged']:.3f} per merged unit "
              f"({r['seconds']:.1f}s)")
    fail_ratio = off["failed_attempts"] / max(on["failed_attempts"], 1)
    cost_ratio = off["cost_per_merged"] / on["cost_per_merged"] if on["merged"] else 0.0
    print(f"failed attempts off/on: {fail_ratio:.2f}x   cost per merged unit off/on: "
          f"{cost_ratio:.2f}x")
    goal = (on["merged"] >= off["merged"] and on["failed_attempts"] < off["failed_attempts"]
            and on["cost_per_merged"] < off["cost_per_merged"])
    report("learning", ours=float(on["failed_attempts"]), baseline=float(off["failed_attempts"]),
           unit="failed attempts", goal_met=goal, missions=MISSIONS,
           cost_per_merged_on=round(on["cost_per_merged"], 4),
           cost_per_merged_off=round(off["cost_per_merged"], 4),
           cost_ratio=round(cost_ratio, 2), merged_on=on["merged"], merged_off=off["merged"],
           failed_memory_only=memory_only["failed_attempts"],
           failed_context_only=context_only["failed_attempts"])


if __name__ == "__main__":
    main()
