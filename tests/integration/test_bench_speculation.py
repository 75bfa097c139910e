"""The speculation benchmark's scenario, shortened: the real engine merges exactly the units
that had a right session among their branches, and every branch's session is paid for
(benchmarks/bench_speculation.py)."""

from __future__ import annotations

import pytest

from benchmarks import bench_speculation


@pytest.mark.slow
def test_branching_merges_every_unit_a_branch_got_right_and_pays_for_all() -> None:
    units, seed = 4, 17
    outcome = bench_speculation.draws(units, bench_speculation.MAX_BRANCHES, 0.5, seed)
    off = bench_speculation.run_scenario(branches=1, units=units, seed=seed)
    on = bench_speculation.run_scenario(branches=3, units=units, seed=seed)
    assert off["merged"] == sum(outcome[(n, 1)] for n in range(1, units + 1)) == off["drawn_right"]
    assert on["merged"] == on["drawn_right"] == sum(
        any(outcome[(n, b)] for b in (1, 2, 3)) for n in range(1, units + 1))
    assert on["merged"] > off["merged"]
    assert (off["sessions"], on["sessions"]) == (units, 3 * units)
    assert on["cost"] == pytest.approx(3 * off["cost"]) == pytest.approx(
        3 * units * bench_speculation.SESSION_COST)
