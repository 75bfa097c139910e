"""Measured effect of speculation branching: success rate and cost per merged unit, off vs on.

The target is a small Python project (unittest). One mission plans UNITS independent units
(``app/unit_<n>.py`` + its test), all marked ``uncertain`` by the planner. Each agent session
gets its unit right with probability P: a right session writes the function and a passing
test; a wrong one writes a function off by one, so its test fails. The draws are made up
front from a fixed seed, one per (unit, branch), and branch 1 of a unit draws the same in both
modes, so "on" sees everything "off" sees plus more branches.

Everything real runs: the planner's ``uncertain`` mark, dispatch, worktrees, the branches'
verification in their worktrees, the selection (``tests``), the merge queue with batching
and bisection, promotion. Fixup is switched off (``fixup_max_attempts = 0``) so a unit whose
chosen change fails verification fails, and the success rate is the agents' and the
selection's alone (no repair). The agents are the scripted backend; each session costs
SESSION_COST dollars.

- off: ``[speculation] enabled = false``: one agent per unit; expected success P;
- on: ``enabled = true, branch_count = BRANCHES, selection = "tests"``: expected success
  ``1 - (1 - P) ** BRANCHES``, for BRANCHES times the agent cost.

Reports the success rate on vs off (the figure; higher is better), with the cost per merged
unit of both as extras. The goal is met when branching merges more units. The price is
shown, not hidden: cost per merged unit is higher with branching when P is high.

    uv run python benchmarks/bench_speculation.py [--units 20] [--p 0.5] [--branches 3]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
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

UNITS = 20
P = 0.5
BRANCHES = 3
SEED = 17
SESSION_COST = 0.10
MAX_BRANCHES = 8  # [speculation] branch_count's upper bound


def draws(units: int, branches: int, p: float, seed: int) -> dict[tuple[int, int], bool]:
    """Whether the session of (unit, branch) gets it right; the same for every mode."""
    rng = random.Random(seed)
    return {(n, b): rng.random() < p for n in range(1, units + 1) for b in range(1, branches + 1)}


def worker_entry(n: int, right: bool, branch: int | None) -> str:
    value = n if right else n + 1
    when = f'unit_title = "Unit {n}"' + (f', candidate = "{branch}"' if branch else "")
    test = (f"import unittest\\n\\nfrom app.unit_{n} import unit_{n}\\n\\n\\n"
            f"class Unit{n}Test(unittest.TestCase):\\n    def test_value(self):\\n"
            f"        self.assertEqual(unit_{n}(), {n})\\n")
    return f'''
[[interaction]]
role = "worker"
when = {{ {when} }}
cost_usd = {SESSION_COST}
actions = [
  {{ type = "write", path = "app/unit_{n}.py", content = "def unit_{n}():\\n    return {value}\\n" }},
  {{ type = "write", path = "tests/test_unit_{n}.py", content = "{test}" }},
  {{ type = "commit", message = "Unit {n}" }},
]
'''


def cassette(units: int, outcome: dict[tuple[int, int], bool], branches: int) -> str:
    plan = ", ".join(
        f'{{"title": "Unit {n}", "description": "Add app/unit_{n}.py: unit_{n}() returns {n}", '
        f'"files_hint": ["app/unit_{n}.py"], "acceptance_criteria": ["tests pass"], '
        f'"uncertain": true, "leaf": true}}' for n in range(1, units + 1))
    out = [f'''
[[interaction]]
role = "planner"
actions = [{{ type = "text", text = '{{"units": [{plan}]}}' }}]
''', CHECKS, reflection("some units were wrong")]
    for n in range(1, units + 1):
        if branches > 1:
            out += [worker_entry(n, outcome[(n, b)], b) for b in range(1, branches + 1)]
        else:
            out.append(worker_entry(n, outcome[(n, 1)], None))
    return "".join(out)


def speculation_config(root: Path, units: int, branches: int) -> Path:
    spec = (f'[speculation]\nenabled = true\nbranch_count = {branches}\nselection = "tests"\n'
            if branches > 1 else "[speculation]\nenabled = false\n")
    return write_config(
        root, name="bench-speculation", objective="Add the units", workers=2, max_rounds=1,
        fixup_max_attempts=0,
        extra=("[scheduler.budget]\nmax_per_run_usd = 1000\n"
               f"[planner]\nmax_children_per_node = {max(units, 1)}\n" + spec))


def run_scenario(*, branches: int, units: int = UNITS, p: float = P,
                 seed: int = SEED) -> dict[str, float]:
    """One mission of ``units`` units with ``branches`` agents per unit (1: off)."""
    outcome = draws(units, MAX_BRANCHES, p, seed)  # the same draws whatever ``branches`` is
    with tempfile.TemporaryDirectory(prefix="mc-bench-speculation-") as tmp:
        root = Path(tmp)
        make_repo(root)
        (root / "cassette.toml").write_text(cassette(units, outcome, branches))
        run = run_mission(speculation_config(root, units, branches))
        store, mid = run.store, run.mission_id
        merged = merged_units(store, mid)
        sessions = store.query(
            "SELECT COUNT(*) AS n FROM attempts WHERE mission_id = ? AND role = 'worker'",
            (mid,))[0]["n"]
        cost = store.mission_cost(mid)
        store.close()
    drawn = sum(any(outcome[(n, b)] for b in range(1, max(branches, 1) + 1))
                for n in range(1, units + 1))
    return {"units": units, "merged": merged, "success_rate": merged / units,
            "drawn_right": drawn,  # units with at least one right session: what can merge
            "sessions": sessions, "cost": round(cost, 4),
            "cost_per_merged": round(cost / merged, 4) if merged else float("inf"),
            "seconds": round(run.seconds, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=UNITS)
    parser.add_argument("--p", type=float, default=P, help="per-session success probability")
    parser.add_argument("--branches", type=int, default=BRANCHES)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    off = run_scenario(branches=1, units=args.units, p=args.p, seed=args.seed)
    on = run_scenario(branches=args.branches, units=args.units, p=args.p, seed=args.seed)
    for name, row in (("off", off), ("on", on)):
        print(f"branching {name:3}: {row['merged']}/{row['units']} merged "
              f"({row['success_rate']:.0%}), {row['sessions']} agent sessions, "
              f"${row['cost']:.2f} total, ${row['cost_per_merged']:.3f} per merged unit, "
              f"{row['seconds']:.1f}s; units with a right session drawn: {row['drawn_right']}")
    expected_on = 1 - (1 - args.p) ** args.branches
    print(f"expected success: off {args.p:.0%}, on {expected_on:.1%} "
          f"(1 - (1 - p)^{args.branches})")
    report(
        "speculation_success_rate", ours=on["success_rate"], baseline=off["success_rate"],
        unit="merged units / planned units", higher_is_better=True,
        goal_met=on["success_rate"] > off["success_rate"],
        units=args.units, p=args.p, branches=args.branches, seed=args.seed,
        cost_per_merged_off=off["cost_per_merged"], cost_per_merged_on=on["cost_per_merged"],
        sessions_off=off["sessions"], sessions_on=on["sessions"],
        drawn_right_off=off["drawn_right"], drawn_right_on=on["drawn_right"],
        expected_success_off=args.p, expected_success_on=round(expected_on, 4),
    )


if __name__ == "__main__":
    main()
