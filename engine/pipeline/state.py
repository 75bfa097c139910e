"""What the phases of one mission share: the runtime, the plugins, the stop request, the
cost and progress trackers; and the outcome of one epoch."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from engine.budget import EmaCostTracker
from engine.gates.evaluator import ProgressEvaluator
from engine.ledger import Unit
from engine.models import MissionStatus, UnitStatus
from engine.plugins import PluginManager
from engine.runtime import Runtime
from engine.store import Store

Stop = tuple[MissionStatus, str]


@dataclass
class EpochResult:
    merged: int = 0
    failed: int = 0
    cost: float = 0.0
    tests_passed: int | None = None  # None: no passing verification to read them from
    tests_failed: int | None = None
    lint_errors: int | None = None
    stop: Stop | None = None


@dataclass
class StopRequest:
    requested: bool = False
    reason: str = ""
    status: MissionStatus = MissionStatus.STOPPED


@dataclass
class MissionState:
    """The mission-wide state every phase reads and some update."""

    rt: Runtime
    plugins: PluginManager
    started: float  # monotonic time the mission (counting earlier runs) started
    stop: StopRequest = field(default_factory=StopRequest)
    paused: bool = False
    ema: EmaCostTracker = field(default_factory=EmaCostTracker)
    evaluator: ProgressEvaluator = field(default_factory=ProgressEvaluator)
    objective_checks: int = 0
    objective_feedback: str | None = None
    not_before: dict[str, float] = field(default_factory=dict)  # unit id -> monotonic time
    aux: Any = None  # the mc/aux worktree one-shot LLM calls run in

    @property
    def store(self) -> Store:
        return self.rt.store

    def request_stop(self, reason: str, status: MissionStatus = MissionStatus.STOPPED) -> None:
        self.stop = StopRequest(True, reason, status)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def restore(self) -> None:
        """On resume: rebuild the EMA, the stall evaluator and the objective-check count
        from the epochs' decision columns (the ledger's, see ``engine/ledger.py``)."""
        for epoch in self.rt.epochs.epochs(self.rt.mission_id):
            if epoch.feedback_at is not None:
                self.ema.observe(epoch.cost_usd)
                self.evaluator.record(units_merged=epoch.units_merged,
                                      tests_passed=epoch.tests_passed,
                                      tests_failed=epoch.tests_failed,
                                      lint_errors=epoch.lint_errors)
            if epoch.objective_met is not None:
                self.objective_checks += 1
                if not epoch.objective_met:
                    self.objective_feedback = epoch.objective_feedback

    def epoch_units(self, epoch_id: int) -> list[Unit]:
        return self.rt.units.epoch_units(epoch_id)

    def stall_stop(self) -> Stop | None:
        threshold = self.rt.config.rounds.stall_threshold
        if self.evaluator.stalled(threshold):
            return MissionStatus.STALLED, f"no progress for {threshold} epoch(s)"
        return None


def leaf_tally(units: list[Unit]) -> tuple[int, int]:
    """(merged, failed or blocked) leaf units: an epoch's outcome."""
    leaves = [u for u in units if u.is_leaf]
    merged = sum(1 for u in leaves if u.status == UnitStatus.MERGED)
    failed = sum(1 for u in leaves if u.status in (UnitStatus.FAILED, UnitStatus.BLOCKED))
    return merged, failed


def leaf_exceptions(exc: BaseException) -> list[BaseException]:
    """The real errors inside (nested) exception groups, so a failure names its cause."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in leaf_exceptions(inner)]
    return [exc]
