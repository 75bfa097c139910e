from engine.resilience.breaker import BreakerState, CircuitBreaker, degraded_workers, single_pass


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_threshold_and_half_opens_after_timeout() -> None:
    clock = Clock()
    breaker = CircuitBreaker(3, 60, clock=clock)
    assert breaker.record(False) is None
    assert breaker.record(False) is None
    assert breaker.record(False) == BreakerState.OPEN
    clock.now = 59
    assert breaker.state == BreakerState.OPEN
    clock.now = 60
    assert breaker.state == BreakerState.HALF_OPEN
    assert breaker.record(False) == BreakerState.OPEN  # a half-open failure reopens at once
    clock.now = 200
    assert breaker.record(True) == BreakerState.CLOSED
    assert breaker.failures == 0


def test_success_resets_the_count() -> None:
    breaker = CircuitBreaker(2, 10, clock=Clock())
    breaker.record(False)
    breaker.record(True)
    assert breaker.record(False) is None
    assert breaker.state == BreakerState.CLOSED


def test_degraded_workers() -> None:
    assert degraded_workers(4, "reduce_workers", BreakerState.OPEN) == 2
    assert degraded_workers(1, "reduce_workers", BreakerState.OPEN) == 1
    assert degraded_workers(4, "pause", BreakerState.OPEN) == 0
    assert degraded_workers(4, "fallback_model", BreakerState.OPEN) == 4
    assert degraded_workers(4, "pause", BreakerState.HALF_OPEN) == 1  # one probe session
    assert degraded_workers(4, "pause", BreakerState.CLOSED) == 4
    assert degraded_workers(4, "simple", BreakerState.OPEN) == 2  # the original tool's name
    assert degraded_workers(4, "simple", BreakerState.HALF_OPEN) == 1


def test_simple_strategy_runs_workers_in_one_pass_while_open() -> None:
    assert single_pass("simple", BreakerState.OPEN)
    assert not single_pass("simple", BreakerState.HALF_OPEN)
    assert not single_pass("simple", BreakerState.CLOSED)
    assert not single_pass("reduce_workers", BreakerState.OPEN)
