"""A circuit breaker over agent sessions, and what the controller does while it is open.

After ``failure_threshold`` consecutive agent failures (errors, timeouts, crashes, overload)
the breaker opens for ``reset_timeout`` seconds. While open, dispatch degrades by the
configured strategy: ``reduce_workers`` halves the parallelism, ``simple`` halves it and runs
each worker in one pass (no architect pass even with ``agent.two_pass``: the original tool's
"fall back to simpler strategies"), ``pause`` dispatches nothing, ``fallback_model`` runs
workers on ``degradation.fallback_model``. After the timeout the
breaker is half-open: the next session decides (success closes it, failure reopens it).
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
