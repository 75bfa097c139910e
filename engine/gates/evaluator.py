"""Progress evaluation across epochs: did this epoch improve anything, has the mission stalled?

An epoch *improves* when it merged at least one unit, or beats every earlier epoch (and the
baseline, if given) on one measure: more tests passing, fewer tests failing, fewer lint errors.
Comparing with the best so far, not only the previous epoch, keeps oscillation from counting
as progress. A measure an epoch could not take (``None``: no passing verification, a plan
that failed) is left out of the comparison rather than read as a perfect 0.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EpochProgress:
    epoch: int
    units_merged: int
    tests_passed: int | None
    tests_failed: int | None
    lint_errors: int | None


class ProgressEvaluator:
    """Records one :class:`EpochProgress` per epoch and answers ``improved`` / ``stalled``."""

    def __init__(self, baseline: EpochProgress | None = None) -> None:
        self.baseline = baseline
        self.history: list[EpochProgress] = []
        self._improved: list[bool] = []

    def record(
        self,
        units_merged: int = 0,
        tests_passed: int | None = None,
        tests_failed: int | None = None,
        lint_errors: int | None = None,
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
        return (
            _beats(progress.tests_passed, [p.tests_passed for p in earlier], more_is_better=True)
            or _beats(progress.tests_failed, [p.tests_failed for p in earlier], more_is_better=False)
            or _beats(progress.lint_errors, [p.lint_errors for p in earlier], more_is_better=False)
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


def _beats(value: int | None, earlier: list[int | None], *, more_is_better: bool) -> bool:
    """``value`` beats the best measured earlier value (unmeasured ones do not count)."""
    known = [v for v in earlier if v is not None]
    if value is None or not known:
        return False
    return value > max(known) if more_is_better else value < min(known)
