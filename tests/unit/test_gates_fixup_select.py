"""Candidate selection (fixup and speculation branches): test and lint counts from real tool
output, and winner ranking under each selection policy."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from engine.gates.fixup_select import (
    FIXUP_APPROACHES,
    SELECTION_POLICIES,
    Candidate,
    FixupCandidate,
    choose_winner,
    count_lint_errors,
    needs_verification,
    parse_test_counts,
    rank_key,
    review_contenders,
)


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("5 passed, 1 failed in 0.3s", (5, 1)),
        ("==================== 3 failed, 10 passed in 1.20s ====================", (10, 3)),
        ("== 3 failed, 10 passed ==", (10, 3)),
        ("===== 1 failed, 2 passed, 1 error in 0.05s =====", (2, 2)),
        ("4 passed, 2 skipped, 1 xfailed, 3 warnings in 0.12s", (4, 0)),
        ("12 passed, 1 deselected in 65.31s (0:01:05)", (12, 0)),
        ("2 errors in 0.40s", (0, 2)),
        ("============ no tests ran in 0.01s ============", (0, 0)),
        ("\x1b[32m\x1b[1m7 passed\x1b[0m\x1b[32m in 0.02s\x1b[0m", (7, 0)),
        ("Ran 7 tests in 0.001s\n\nOK", (7, 0)),
        ("Ran 7 tests in 0.001s\n\nFAILED (failures=2, errors=1)", (4, 3)),
        ("Ran 5 tests in 0.010s\n\nOK (skipped=1, expected failures=1)", (3, 0)),
        ("Ran 3 tests in 0.010s\n\nFAILED (unexpected successes=1)", (2, 1)),
        ("We retried 2 failed attempts and 3 passed checks", (0, 0)),
        ("", (0, 0)),
    ],
)
def test_parse_test_counts(output: str, expected: tuple[int, int]) -> None:
    assert parse_test_counts(output) == expected


def test_several_runs_are_summed() -> None:
    out = "...\n3 passed in 0.1s\nlint ok\n== 1 failed, 2 passed in 0.2s =="
    assert parse_test_counts(out) == (5, 1)


def test_exit_code_fallback() -> None:
    assert parse_test_counts("make: ok", exit_code=0) == (1, 0)
    assert parse_test_counts("make: *** Error 2", exit_code=2) == (0, 1)
    assert parse_test_counts("make: ok") == (0, 0)
    assert parse_test_counts("3 passed in 0.1s", exit_code=1) == (3, 0)  # parsed output wins


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=60)


def test_real_pytest_output(tmp_path: Path) -> None:
    (tmp_path / "test_sample.py").write_text(
        textwrap.dedent("""
        import pytest

        def test_a(): assert True
        def test_b(): assert True
        def test_c(): assert 1 == 2
        @pytest.mark.skip
        def test_d(): pass
        @pytest.fixture
        def broken(): raise RuntimeError("fixture")
        def test_e(broken): pass
    """)
    )
    proc = _run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "test_sample.py"], tmp_path
    )
    assert proc.returncode == 1
    assert parse_test_counts(proc.stdout) == (2, 2)  # 1 failed + 1 error
    quiet = _run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_sample.py"], tmp_path
    )
    assert parse_test_counts(quiet.stdout) == (2, 2)


def test_real_unittest_output(tmp_path: Path) -> None:
    (tmp_path / "test_ut.py").write_text(
        textwrap.dedent("""
        import unittest

        class T(unittest.TestCase):
            def test_ok(self): pass
            def test_ok2(self): pass
            def test_fail(self): self.assertEqual(1, 2)
            @unittest.skip("later")
            def test_skip(self): pass
    """)
    )
    proc = _run([sys.executable, "-m", "unittest", "test_ut"], tmp_path)
    assert proc.returncode == 1
    assert parse_test_counts(proc.stderr) == (2, 1)


def test_real_ruff_output(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text("import os\nimport sys\n\nx = undefined_name\n")
    (tmp_path / "good.py").write_text("x = 1\n")
    args = [sys.executable, "-m", "ruff", "check", "--no-cache", "--isolated", "--select", "F"]
    bad = _run([*args, "bad.py"], tmp_path)
    assert bad.returncode == 1
    assert count_lint_errors(bad.stdout) == 3
    concise = _run([*args, "--output-format", "concise", "bad.py"], tmp_path)
    assert count_lint_errors(concise.stdout) == 3
    good = _run([*args, "good.py"], tmp_path)
    assert good.returncode == 0 and count_lint_errors(good.stdout) == 0


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("Found 1 error.", 1),
        ("Found 12 errors.\n[*] 3 fixable with the `--fix` option.", 12),
        ("Found 4 errors (3 fixed, 1 remaining).", 1),
        ("All checks passed!", 0),
        ("src/a.py:1:1: F401 `os` imported but unused\nsrc/b.py:10:80: E501 Line too long", 2),
        ("src/a.py:3: error: Incompatible types\nsrc/a.py:4: note: see here", 1),
        ("Found 2 errors.\nFound 3 errors in 2 files (checked 9 source files)", 5),
        ("", 0),
    ],
)
def test_count_lint_errors(output: str, expected: int) -> None:
    assert count_lint_errors(output) == expected


def cand(
    index: int,
    *,
    verified: bool = True,
    passed: int = 10,
    failed: int = 0,
    lint: int = 0,
    diff: int = 50,
    head: str | None = "abc",
) -> FixupCandidate:
    return FixupCandidate(
        index,
        FIXUP_APPROACHES[index % len(FIXUP_APPROACHES)],
        verified,
        passed,
        failed,
        lint,
        diff,
        head,
    )


def test_winner_ranking_order() -> None:
    # verified beats more tests
    assert choose_winner([cand(0, verified=False, passed=99), cand(1, passed=1)]).index == 1
    # then most tests passed
    assert choose_winner([cand(0, passed=5), cand(1, passed=7)]).index == 1
    # then fewest lint errors
    assert choose_winner([cand(0, lint=3), cand(1, lint=1)]).index == 1
    # then smallest diff
    assert choose_winner([cand(0, diff=80), cand(1, diff=20)]).index == 1
    # then lowest index
    assert choose_winner([cand(2), cand(1)]).index == 1


def test_candidates_without_commit_never_win() -> None:
    assert (
        choose_winner([cand(0, head=None, passed=100), cand(1, verified=False, passed=0)]).index
        == 1
    )
    assert choose_winner([cand(0, head=None), cand(1, head="")]) is None
    assert choose_winner([]) is None


def test_approaches_are_distinct() -> None:
    assert len(FIXUP_APPROACHES) >= 3 and len(set(FIXUP_APPROACHES)) == len(FIXUP_APPROACHES)


# ---------------------------------------------------------------------- selection policies
def scored(index: int, *, verified: bool = True, passed: int = 5, lint: int = 0, diff: int = 50,
           review: float | None = None, head: str | None = "abc") -> Candidate:
    return Candidate(index, "a", verified, passed, 0, lint, diff, head, review_score=review)


FIELD = [
    scored(0, verified=False, passed=9, diff=5, review=9.5),  # fails verification, small, liked
    scored(1, passed=7, diff=80, review=6.0),                 # most tests, big diff
    scored(2, passed=7, diff=90, review=8.0),                 # ties 1 on tests, better review
    scored(3, passed=3, diff=10, review=7.0),                 # fewer tests, smallest passing diff
]


@pytest.mark.parametrize(("policy", "winner"), [
    ("tests", 1), ("review", 0), ("smallest_diff", 3), ("best_score", 2),
])
def test_each_policy_picks_its_winner(policy: str, winner: int) -> None:
    chosen = choose_winner(FIELD, policy)
    assert chosen is not None and chosen.index == winner


def test_tests_is_fixups_order_and_the_default() -> None:
    for a in FIELD:
        for b in FIELD:
            assert (rank_key(a) < rank_key(b)) == (rank_key(a, "tests") < rank_key(b, "tests"))
    assert choose_winner(FIELD) is choose_winner(FIELD, "tests")


def test_policy_tie_breaks() -> None:
    # review: an unreviewed candidate comes last; equal scores go to the smaller diff
    assert choose_winner([scored(0, review=None), scored(1, review=2.0)], "review").index == 1
    assert choose_winner([scored(0, review=7.0, diff=9), scored(1, review=7.0, diff=3)],
                         "review").index == 1
    # best_score: lint errors count before the review; then the diff, then the index
    assert choose_winner([scored(0, lint=2, review=10.0), scored(1, review=1.0)],
                         "best_score").index == 1
    assert choose_winner([scored(1, review=5.0), scored(0, review=5.0)], "best_score").index == 0
    # smallest_diff never picks a failing candidate over a passing one
    assert choose_winner([scored(0, verified=False, diff=1), scored(1, diff=500)],
                         "smallest_diff").index == 1
    # without a commit nothing wins, whatever the policy
    for policy in SELECTION_POLICIES:
        assert choose_winner([scored(0, head=None, review=10.0)], policy) is None


def test_unknown_policy_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown selection policy 'fastest'"):
        rank_key(FIELD[0], "fastest")


def test_reviews_are_asked_only_where_they_can_decide() -> None:
    assert [c.index for c in review_contenders(FIELD, "review")] == [0, 1, 2, 3]
    assert [c.index for c in review_contenders(FIELD, "best_score")] == [1, 2]
    assert review_contenders(FIELD, "tests") == review_contenders(FIELD, "smallest_diff") == []
    assert review_contenders([scored(0, head=None)], "review") == []
    assert not needs_verification("review") and needs_verification("best_score")


def test_the_config_offers_exactly_these_policies() -> None:
    from typing import get_args

    from engine.config import SpeculationConfig

    annotation = SpeculationConfig.model_fields["selection"].annotation
    assert set(get_args(annotation)) == set(SELECTION_POLICIES)
