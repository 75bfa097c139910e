"""Per-unit rewards: merged or not, the review score, and the test delta of the change.

The test delta counts test functions the unit's diff adds minus those it removes (Python
``def test_...``, JavaScript/TypeScript ``it(...)`` / ``test(...)``, Go ``func Test...``,
Rust ``#[test]``): a cheap, deterministic signal that needs no extra verification run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TEST_LINE = re.compile(
    r"^(?P<sign>[+-])(?!\+\+|--)\s*(?:(?:async\s+)?def\s+test_\w*|(?:it|test)\s*\(|func\s+Test\w*|#\[test\])"
)
MERGED_BASE = 1.0
REVIEW_WEIGHT = 0.5
TEST_WEIGHT = 0.05
TEST_CAP = 10
FAILED_REWARD = -0.5


@dataclass
class Reward:
    value: float
    merged: bool
    review_score: float | None
    test_delta: int


def count_test_delta(diff: str) -> int:
    """Test functions added minus removed in a unified diff."""
    delta = 0
    for line in diff.splitlines():
        match = _TEST_LINE.match(line)
        if match:
            delta += 1 if match.group("sign") == "+" else -1
    return delta


def unit_reward(*, merged: bool, review_score: float | None, diff: str) -> Reward:
    tests = count_test_delta(diff) if merged else 0
    if not merged:
        return Reward(FAILED_REWARD, False, review_score, 0)
    value = (
        MERGED_BASE
        + REVIEW_WEIGHT * ((review_score if review_score is not None else 5.0) / 10.0)
        + TEST_WEIGHT * max(-TEST_CAP, min(tests, TEST_CAP))
    )
    return Reward(round(value, 4), True, review_score, tests)
