"""One circuit breaker, and how many workers may run under a breaker state.

After ``failure_threshold`` failures in a row the breaker opens for ``reset_timeout``
seconds; then it is half-open: the next outcome decides (success closes it, failure reopens
it). There is one breaker per component (``engine/resilience/board.py``); while one is open,
dispatch degrades by ``[degradation] fallback_strategy`` (``engine/resilience/plugin.py``):
``reduce_workers`` halves the parallelism, ``simple`` halves it and runs each worker in one
pass, ``pause`` dispatches nothing, ``fallback_model`` runs workers on
``degradation.fallback_model``. Half-open: one probe session at a time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(
        self, failure_threshold: int, reset_timeout: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self.clock = clock
        self.failures = 0
        self._opened_at: float | None = None

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self.clock() - self._opened_at >= self.reset_timeout:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def record(self, ok: bool) -> BreakerState | None:
        """Record one session; returns the new state when it changed, else None."""
        before = self.state
        if ok:
            self.failures = 0
            self._opened_at = None
        else:
            self.failures += 1
            if before == BreakerState.HALF_OPEN or self.failures >= self.failure_threshold:
                self._opened_at = self.clock()
        after = self.state
        return after if after != before else None


def degraded_workers(workers: int, strategy: str, state: BreakerState) -> int:
    """How many units may run at once under ``state`` (half-open: one probe session)."""
    if state == BreakerState.CLOSED:
        return workers
    if state == BreakerState.HALF_OPEN:
        return min(workers, 1)
    if strategy == "pause":
        return 0
    if strategy in ("reduce_workers", "simple"):
        return max(1, workers // 2)
    return workers


def single_pass(strategy: str, state: BreakerState) -> bool:
    """True when workers must skip the architect pass (``simple`` while the breaker is open)."""
    return strategy == "simple" and state == BreakerState.OPEN
