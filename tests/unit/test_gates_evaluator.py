"""ProgressEvaluator: improvement against the best so far, stall detection."""

from __future__ import annotations

import pytest

from engine.gates.evaluator import EpochProgress, ProgressEvaluator


def test_epochs_number_themselves_and_positional_measures() -> None:
    ev = ProgressEvaluator()
    assert ev.record(1, 0, 0, 0)
    assert ev.record(0, 5, 0, 0)  # 5 tests passing beats epoch 1's 0
    assert not ev.record(0, 5, 1, 0)  # nothing beats the best so far
    assert [p.epoch for p in ev.history] == [1, 2, 3]
    assert ev.history[1] == EpochProgress(2, 0, 5, 0, 0)


def test_merging_units_is_improvement() -> None:
    ev = ProgressEvaluator()
    assert ev.record(epoch=1, units_merged=2, tests_passed=5)
    assert ev.improved()


def test_first_epoch_without_merges_is_not_improvement() -> None:
    ev = ProgressEvaluator()
    assert not ev.record(epoch=1, units_merged=0, tests_passed=10)


def test_test_and_lint_measures_count_against_the_best_so_far() -> None:
    ev = ProgressEvaluator()
    ev.record(epoch=1, units_merged=1, tests_passed=10, tests_failed=3, lint_errors=5)
    assert ev.record(
        epoch=2, units_merged=0, tests_passed=11, tests_failed=3, lint_errors=5
    )  # more passing
    assert ev.record(
        epoch=3, units_merged=0, tests_passed=11, tests_failed=2, lint_errors=5
    )  # fewer failing
    assert ev.record(
        epoch=4, units_merged=0, tests_passed=11, tests_failed=2, lint_errors=4
    )  # fewer lint
    assert not ev.record(
        epoch=5, units_merged=0, tests_passed=11, tests_failed=2, lint_errors=4
    )  # same
    # worse then back to the best is not progress (oscillation)
    assert not ev.record(epoch=6, units_merged=0, tests_passed=9, tests_failed=4, lint_errors=6)
    assert not ev.record(epoch=7, units_merged=0, tests_passed=11, tests_failed=2, lint_errors=4)


def test_baseline_lets_the_first_epoch_improve() -> None:
    ev = ProgressEvaluator(
        baseline=EpochProgress(0, 0, tests_passed=4, tests_failed=2, lint_errors=9)
    )
    assert ev.record(epoch=1, units_merged=0, tests_passed=4, tests_failed=2, lint_errors=8)
    assert not ProgressEvaluator(baseline=EpochProgress(0, 0, 4, 2, 9)).record(
        epoch=1, units_merged=0, tests_passed=4, tests_failed=2, lint_errors=9
    )


def test_stalled_after_threshold_epochs_without_improvement() -> None:
    ev = ProgressEvaluator()
    ev.record(epoch=1, units_merged=1)
    assert not ev.stalled(2)
    ev.record(epoch=2, units_merged=0)
    assert not ev.stalled(2)
    assert ev.epochs_without_improvement() == 1
    ev.record(epoch=3, units_merged=0)
    assert ev.stalled(2) and not ev.stalled(3)
    ev.record(epoch=4, units_merged=1)
    assert not ev.stalled(1) and ev.epochs_without_improvement() == 0


def test_not_stalled_with_too_few_epochs() -> None:
    ev = ProgressEvaluator()
    ev.record(epoch=1, units_merged=0)
    assert ev.stalled(1)
    assert not ev.stalled(2)
    with pytest.raises(ValueError):
        ev.stalled(0)


def test_re_recording_an_epoch_replaces_it() -> None:
    ev = ProgressEvaluator()
    ev.record(epoch=1, units_merged=1, tests_passed=3)
    ev.record(epoch=2, units_merged=0, tests_passed=3)
    assert ev.stalled(1)
    assert ev.record(epoch=2, units_merged=0, tests_passed=5)
    assert [p.epoch for p in ev.history] == [1, 2] and not ev.stalled(1)


def test_improved_for_a_hypothetical_epoch() -> None:
    ev = ProgressEvaluator()
    ev.record(epoch=1, units_merged=1, tests_passed=3, tests_failed=1, lint_errors=0)
    assert ev.improved(EpochProgress(2, 0, 4, 1, 0))
    assert not ev.improved(EpochProgress(2, 0, 3, 1, 0))
    assert len(ev.history) == 1  # asking does not record


def test_unmeasured_epochs_are_left_out_not_read_as_zero() -> None:
    """A failed plan or an epoch without a passing verification measured nothing."""
    ev = ProgressEvaluator()
    ev.record(epoch=1, units_merged=1, tests_passed=10, tests_failed=0, lint_errors=3)
    assert not ev.record(epoch=2, units_merged=0)  # planning failed: nothing measured
    # fewer lint errors than the best *measured* epoch is progress (0 from epoch 2 is not real)
    assert ev.record(epoch=3, units_merged=0, tests_passed=10, tests_failed=0, lint_errors=2)
    assert not ProgressEvaluator().record(units_merged=0, tests_passed=3)  # nothing to beat
