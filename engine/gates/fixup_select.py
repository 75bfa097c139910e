"""N-of-M candidates (fixup candidates, speculation branches): reading test and lint results,
and choosing the winning candidate by a selection policy.

Policies (:data:`SELECTION_POLICIES`, ``[speculation] selection``): ``tests`` (fixup's own
order: verified, most tests passed, fewest lint errors, smallest diff), ``review`` (highest
review score, then smallest diff), ``smallest_diff`` (verified, then smallest diff) and
``best_score`` (the ``tests`` result, then the review score, then the smallest diff). Ties
go to the lowest index.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

FIXUP_APPROACHES: list[str] = [
    "Fix the implementation so that the existing tests pass; do not weaken or delete tests.",
    "Check whether the failing tests are wrong; if so adjust them while keeping their intent, "
    "otherwise fix the implementation.",
    "Re-do the unit's change minimally on top of the current green branch, touching as little "
    "as possible.",
]

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_PYTEST_ITEM = (
    r"\d+ (?:passed|failed|errors?|skipped|deselected|xfailed|xpassed|warnings?|reruns?"
    r"|subtests passed|subtests failed)"
)
_PYTEST_SUMMARY = re.compile(
    rf"^=*\s*(?:{_PYTEST_ITEM})(?:,\s*{_PYTEST_ITEM})*"
    r"(?:\s+in\s+[\d.]+\s*s(?:econds)?(?:\s+\([\d:.]+\))?)?\s*=*$"
)
_PYTEST_NONE = re.compile(r"^=*\s*no tests ran(?:\s+in\s+[\d.]+\s*s)?\s*=*$")
_COUNT = re.compile(r"(\d+) (passed|failed|errors?)\b")
_UNITTEST_RAN = re.compile(r"^Ran (\d+) tests? in ")
_UNITTEST_RESULT = re.compile(r"^(OK|FAILED)(?:\s*\((.*)\))?\s*$")
_FOUND = re.compile(r"^Found (\d+) errors?\b(?:.*?(\d+) remaining)?", re.M)
_DIAGNOSTIC = re.compile(
    r"^\S+?:\d+:(?:\d+:)?\s+(?:[A-Z]+\d+\b|error:|warning:)|^\s*-->\s+\S+:\d+:\d+"
)


def _lines(output: str) -> list[str]:
    return [_ANSI.sub("", line).strip() for line in output.splitlines()]


def parse_test_counts(output: str, *, exit_code: int | None = None) -> tuple[int, int]:
    """``(passed, failed)`` read from test runner output.

    pytest summary lines ("5 passed, 1 failed in 0.3s", "== 3 failed, 10 passed ==",
    "no tests ran"; errors count as failed; several runs are summed) and unittest
    ("Ran 7 tests" + "OK" / "FAILED (failures=2, errors=1, skipped=1)"). When neither is
    found: ``(1, 0)`` for ``exit_code == 0``, ``(0, 1)`` for another exit code, else ``(0, 0)``.
    """
    passed = failed = 0
    found = False
    ran: int | None = None
    for line in _lines(output):
        if _PYTEST_SUMMARY.match(line):
            found = True
            for number, word in _COUNT.findall(line):
                if word == "passed":
                    passed += int(number)
                else:
                    failed += int(number)
        elif _PYTEST_NONE.match(line):
            found = True
        elif match := _UNITTEST_RAN.match(line):
            ran = int(match.group(1))
        elif ran is not None and (match := _UNITTEST_RESULT.match(line)):
            found = True
            details = _unittest_details(match.group(2) or "")
            bad = details.get("failures", 0) + details.get("errors", 0)
            bad += details.get("unexpected_successes", 0)
            skipped = details.get("skipped", 0) + details.get("expected_failures", 0)
            passed += max(ran - bad - skipped, 0)
            failed += bad
            ran = None
    if found:
        return passed, failed
    if exit_code is None:
        return 0, 0
    return (1, 0) if exit_code == 0 else (0, 1)


def _unittest_details(text: str) -> dict[str, int]:
    """``"failures=2, expected failures=1"`` -> ``{"failures": 2, "expected_failures": 1}``."""
    details: dict[str, int] = {}
    for part in text.split(","):
        key, _, value = part.partition("=")
        if value.strip().isdigit():
            details[key.strip().replace(" ", "_")] = int(value)
    return details


def count_lint_errors(output: str) -> int:
    """Lint problems in linter output.

    Uses summary lines when present (ruff/mypy "Found N errors", with "N remaining" after a
    fix run; several summaries are summed), else counts diagnostic lines
    (``path:line:col: CODE message``, ``path:line: error: ...``, ruff's ``--> path:line:col``).
    "All checks passed!" and empty output are 0.
    """
    text = "\n".join(_lines(output))
    summaries = _FOUND.findall(text)
    if summaries:
        return sum(int(remaining or total) for total, remaining in summaries)
    return sum(1 for line in text.splitlines() if _DIAGNOSTIC.match(line))


SelectionPolicy = Literal["tests", "review", "smallest_diff", "best_score"]
SELECTION_POLICIES: tuple[str, ...] = ("tests", "review", "smallest_diff", "best_score")


@dataclass
class Candidate:
    """One candidate's result. ``review_score`` is 0-10 (None: not reviewed); ``diff_lines``
    is insertions + deletions against the base; ``head_commit`` None: it produced no commit."""

    index: int
    approach: str
    verified: bool
    tests_passed: int
    tests_failed: int
    lint_errors: int
    diff_lines: int
    head_commit: str | None
    review_score: float | None = None


FixupCandidate = Candidate  # the name fixup has always used


def _review(candidate: Candidate) -> float:
    return -(candidate.review_score if candidate.review_score is not None else -1.0)


def verification_key(candidate: Candidate) -> tuple[bool, int, int]:
    """The verification part of the ranking: verified, most tests passed, fewest lint errors."""
    return (not candidate.verified, -candidate.tests_passed, candidate.lint_errors)


def rank_key(candidate: Candidate, policy: str = "tests") -> tuple[float | int | bool, ...]:
    """Sort key under ``policy``, best first (see the module docstring); ``ValueError`` for
    an unknown policy."""
    if policy == "tests":
        return (*verification_key(candidate), candidate.diff_lines, candidate.index)
    if policy == "review":
        return (_review(candidate), candidate.diff_lines, candidate.index)
    if policy == "smallest_diff":
        return (not candidate.verified, candidate.diff_lines, candidate.index)
    if policy == "best_score":
        return (*verification_key(candidate), _review(candidate), candidate.diff_lines, candidate.index)
    raise ValueError(f"unknown selection policy {policy!r}; use one of "
                     f"{', '.join(SELECTION_POLICIES)}")


def needs_verification(policy: str) -> bool:
    """Whether ``policy`` ranks by the verification result (all but ``review``)."""
    return policy != "review"


def review_contenders(candidates: list[Candidate], policy: str) -> list[Candidate]:
    """The candidates whose review can change the outcome under ``policy`` (each review is an
    LLM call): all usable ones for ``review``; for ``best_score`` those tied on the best
    verification result; none for the other policies."""
    usable = [c for c in candidates if c.head_commit]
    if policy == "review":
        return usable
    if policy != "best_score" or not usable:
        return []
    best = min(verification_key(c) for c in usable)
    return [c for c in usable if verification_key(c) == best]


def choose_winner(candidates: list[Candidate], policy: str = "tests") -> Candidate | None:
    """The best candidate under ``policy`` that produced a commit, or ``None`` if none did."""
    usable = [c for c in candidates if c.head_commit]
    return min(usable, key=lambda c: rank_key(c, policy)) if usable else None
