"""Progress evaluation across epochs: did this epoch improve anything, has the mission stalled?

An epoch *improves* when it merged at least one unit, or beats every earlier epoch (and the
baseline, if given) on one measure: more tests passing, fewer tests failing, fewer lint errors.
Comparing with the best so far, not only the previous epoch, keeps oscillation from counting
as progress.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EpochProgress:
    epoch: int
    units_merged: int
    tests_passed: int
    tests_failed: int
    lint_errors: int


class ProgressEvaluator:
    """Records one :class:`EpochProgress` per epoch and answers ``improved`` / ``stalled``."""

    def __init__(self, baseline: EpochProgress | None = None) -> None:
        self.baseline = baseline
        self.history: list[EpochProgress] = []
        self._improved: list[bool] = []

    def record(
        self,
        units_merged: int = 0,
        tests_passed: int = 0,
        tests_failed: int = 0,
        lint_errors: int = 0,
        *,
        epoch: int | None = None,
    ) -> bool:
        """Record an epoch's measures; returns whether it improved.

        ``epoch`` defaults to the one after the last recorded; recording an epoch number
        again replaces that record and every later one.
        """
        if epoch is None:
            epoch = self.history[-1].epoch + 1 if self.history else 1
        progress = EpochProgress(epoch, units_merged, tests_passed, tests_failed, lint_errors)
        for i, old in enumerate(self.history):
            if old.epoch == epoch:
                del self.history[i:]
                del self._improved[i:]
                break
        verdict = self.improved(progress)
        self.history.append(progress)
        self._improved.append(verdict)
        return verdict

    def improved(self, progress: EpochProgress | None = None) -> bool:
        """Whether ``progress`` (default: the last recorded epoch) improves on what came before."""
        if progress is None:
            return bool(self._improved) and self._improved[-1]
        earlier = [p for p in self.history if p.epoch < progress.epoch]
        if self.baseline is not None:
            earlier.insert(0, self.baseline)
        if progress.units_merged > 0:
            return True
        if not earlier:
            return False
        return (
            progress.tests_passed > max(p.tests_passed for p in earlier)
            or progress.tests_failed < min(p.tests_failed for p in earlier)
            or progress.lint_errors < min(p.lint_errors for p in earlier)
        )

    def stalled(self, threshold: int) -> bool:
        """True when the last ``threshold`` recorded epochs all failed to improve."""
        if threshold < 1:
            raise ValueError("threshold must be >= 1")
        recent = self._improved[-threshold:]
        return len(recent) == threshold and not any(recent)

    def epochs_without_improvement(self) -> int:
        """How many of the latest epochs in a row did not improve."""
        count = 0
        for verdict in reversed(self._improved):
            if verdict:
                break
            count += 1
        return count
