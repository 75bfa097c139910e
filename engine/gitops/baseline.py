"""Judging a verification against the baseline it was built on: nothing may get worse.

The baseline of a candidate is the last verification of the ``mc/green`` commit it was
built on (the mission's first verification of ``mc/green``, then the one that promoted
each new ``mc/green``). A run is *accepted* when it makes nothing worse:

* it passed; or
* the baseline is red, and both runs name their failing tests: every failing test of the
  run fails in the baseline too, and the tests account for the run's exit status; or
* the baseline is red and its failure is not explained by test results (exit status
  only, or e.g. a lint step after the tests): the run fails the same way (same status and
  exit code) and names no test the baseline passes. It is accepted as *not verifiable*
  (``baseline = "tolerate"``): the verification cannot tell who broke what, so it blames
  nobody; the note says so in the merge row, ``mc status`` and the report.

Everything else is blamed, with the new failing tests named where they are known.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.gitops.testresults import explains
from engine.gitops.verify import VerificationResult

NOT_VERIFIABLE = "not verifiable: the baseline is red and its failure is not in test results"


@dataclass(frozen=True)
class Baseline:
    """The verification of one ``mc/green`` commit, as the judge needs it."""

    commit: str
    status: str  # "passed" | "failed" | "timeout"
    exit_code: int | None
    failing: frozenset[str] | None  # None: the run named no tests
    verification_id: int | None = None
    output_tail: str = ""  # the last lines of its output, for the report of a red baseline

    @property
    def red(self) -> bool:
        return self.status != "passed"

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Baseline:
        failing = row.get("failing_tests")
        return cls(row["commit_sha"], row["status"], row["exit_code"],
                   frozenset(failing) if failing is not None else None, row.get("id"))

    def describe(self) -> str:
        """One line for logs, ``mc status`` and the mission outcome."""
        if not self.red:
            return f"green at {self.commit[:10]}"
        how = f"{self.status}, exit {self.exit_code}" if self.exit_code is not None else self.status
        if self.failing:
            names = ", ".join(sorted(self.failing)[:5])
            more = f" and {len(self.failing) - 5} more" if len(self.failing) > 5 else ""
            return (f"red at {self.commit[:10]} ({how}): {len(self.failing)} failing "
                    f"test(s): {names}{more}")
        return f"red at {self.commit[:10]} ({how}); no test results to tell which tests fail"


@dataclass(frozen=True)
class Verdict:
    accepted: bool
    note: str = ""  # why a non-passing run was accepted, or what it broke
    new_failures: tuple[str, ...] = ()


def judge(result: VerificationResult, baseline: Baseline | None) -> Verdict:
    """Accept ``result`` when it is no worse than ``baseline`` (None: a green baseline)."""
    if result.status == "passed":
        return Verdict(True)
    failing = result.failing
    if baseline is None or not baseline.red:
        return Verdict(False, "", tuple(sorted(failing or ())))
    if failing is not None and baseline.failing is not None:
        new = tuple(sorted(failing - baseline.failing))
        if new:
            return Verdict(False, f"new failing test(s): {', '.join(new)}", new)
        if explains(failing, result.exit_code):
            return Verdict(True, "fails only the baseline's failing tests: "
                           + ", ".join(sorted(failing)))
    if (not explains(baseline.failing, baseline.exit_code)
            and (result.status, result.exit_code) == (baseline.status, baseline.exit_code)):
        return Verdict(True, NOT_VERIFIABLE)
    return Verdict(False, f"fails differently from the baseline ({result.status}, exit "
                   f"{result.exit_code}; the baseline: {baseline.status}, exit {baseline.exit_code})")


def policy_stop(baseline: Baseline, policy: str) -> str | None:
    """The reason to stop before any agent runs (``must_pass`` and a red baseline), or None."""
    if policy != "must_pass" or not baseline.red:
        return None
    return (f"the verification fails on mc/green before any change and "
            f"target.verification.baseline = \"must_pass\": {baseline.describe()}. Fix the "
            f"suite (or set baseline = \"tolerate\" to judge changes against its failures)")
