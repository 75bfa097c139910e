"""Judging a verification against its baseline (engine/gitops/baseline.py)."""

from __future__ import annotations

from engine.gitops.baseline import NOT_VERIFIABLE, Baseline, judge, policy_stop
from engine.gitops.testresults import TestResults
from engine.gitops.verify import VerificationResult


def run(status: str, code: int | None, failing: set[str] | None = None) -> VerificationResult:
    tests = TestResults(frozenset(failing) if failing is not None else None)
    return VerificationResult(status, code, "out", 0.1, tests)


def base(status: str, code: int | None, failing: set[str] | None = None) -> Baseline:
    return Baseline("c" * 40, status, code, frozenset(failing) if failing is not None else None)


def test_a_pass_is_always_accepted() -> None:
    assert judge(run("passed", 0, set()), base("failed", 1, {"a"})).accepted
    assert judge(run("passed", 0), None).accepted


def test_a_green_baseline_blames_every_failure() -> None:
    verdict = judge(run("failed", 1, {"x"}), base("passed", 0, set()))
    assert not verdict.accepted and verdict.new_failures == ("x",)
    assert not judge(run("failed", 1), None).accepted


def test_only_new_failures_are_blamed() -> None:
    red = base("failed", 1, {"a", "b"})
    assert judge(run("failed", 1, {"a"}), red).accepted
    verdict = judge(run("failed", 1, {"a", "c"}), red)
    assert not verdict.accepted and verdict.new_failures == ("c",)
    assert "c" in verdict.note


def test_a_failure_the_tests_do_not_explain_is_blamed_when_the_baseline_is_explained() -> None:
    # the baseline's failure is its tests; the run's tests pass but something else fails
    assert not judge(run("failed", 1, set()), base("failed", 1, {"a"})).accepted


def test_exit_status_only_accepts_the_same_failure_as_not_verifiable() -> None:
    red = base("failed", 2)
    verdict = judge(run("failed", 2), red)
    assert verdict.accepted and verdict.note == NOT_VERIFIABLE
    assert not judge(run("failed", 3), red).accepted
    assert not judge(run("timeout", None), red).accepted
    # a baseline whose lint fails (tests pass): a run that also fails a test is blamed
    lint_red = base("failed", 1, set())
    assert not judge(run("failed", 1, {"t"}), lint_red).accepted
    assert judge(run("failed", 1, set()), lint_red).accepted


def test_must_pass_stops_only_on_a_red_baseline() -> None:
    assert policy_stop(base("passed", 0, set()), "must_pass") is None
    assert policy_stop(base("failed", 1, {"a"}), "tolerate") is None
    reason = policy_stop(base("failed", 1, {"a"}), "must_pass")
    assert reason and "must_pass" in reason and "a" in reason
