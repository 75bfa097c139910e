"""The learning benchmark's scenario, shortened: with memory and the context store on, the
recurring trap costs fewer failed attempts and less per merged unit (benchmarks/bench_learning.py)."""

from __future__ import annotations

import pytest

from benchmarks import bench_learning


@pytest.mark.slow
def test_learning_lowers_failed_attempts_and_cost(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench_learning, "MISSIONS", 2)
    off = bench_learning.run_scenario(memory=False, context=False)
    on = bench_learning.run_scenario(memory=True, context=True)
    assert off["merged"] == on["merged"] == 2
    assert (off["failed_attempts"], on["failed_attempts"]) == (2, 1)
    assert on["cost_per_merged"] < off["cost_per_merged"]
    # each path carries the lesson alone: the episode (the fixup's failure gist) and the
    # convention the fixup reported
    for memory, context in ((True, False), (False, True)):
        alone = bench_learning.run_scenario(memory=memory, context=context)
        assert (alone["merged"], alone["failed_attempts"]) == (2, 1), (memory, context)
