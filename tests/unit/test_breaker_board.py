"""Breakers per component on a real store: transitions persisted and evented, the
degradation applied and lifted, the hooks of the circuit_breaker plugin."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from engine.config import MissionConfig
from engine.models import Event
from engine.plugins import ObserverContext, PluginConfig, WorkerOptions
from engine.resilience.board import BreakerBoard, breaker_rows, component_of_session
from engine.resilience.breaker import BreakerState
from engine.resilience.plugin import CircuitBreakerPlugin
from engine.store import Store


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "m.db")
    yield s
    s.close()


def mission(store: Store) -> int:
    return int(store.insert("missions", {"objective": "o", "status": "running",
                                         "started_at": 1.0}))


def kinds(store: Store, kind: str) -> list[dict]:
    return [e.payload for e in store.events_after(0) if e.kind == kind]


def test_components_are_named_by_role_backend_and_model() -> None:
    assert component_of_session("worker", "claude", "sonnet") == "agent:claude/sonnet"
    assert component_of_session("editor", "codex", "gpt-5") == "agent:codex/gpt-5"
    assert component_of_session("planner", "claude", "opus") == "planner"
    assert component_of_session("objective_check", "claude", "opus") == "planner"
    assert component_of_session("reviewer", "claude", "opus") == "reviewer"


def test_each_component_has_its_own_breaker_persisted_and_evented(store: Store) -> None:
    mid = mission(store)
    clock = Clock()
    board = BreakerBoard(2, 30.0, clock=clock)
    board.bind(store, mid, "reduce_workers")
    board.record("agent:claude/sonnet", False)
    assert board.record("planner", True) == []
    assert board.state("agent:claude/sonnet") == BreakerState.CLOSED
    changed = board.record("agent:claude/sonnet", False)
    assert changed == [("agent:claude/sonnet", BreakerState.CLOSED, BreakerState.OPEN)]
    assert board.state("planner") == BreakerState.CLOSED  # its own count
    rows = {r["component"]: r for r in breaker_rows(store, mid)}
    assert rows["agent:claude/sonnet"]["state"] == "open" and rows["agent:claude/sonnet"]["failures"] == 2
    clock.now += 31
    assert board.poll() == [("agent:claude/sonnet", BreakerState.OPEN, BreakerState.HALF_OPEN)]
    assert board.record("agent:claude/sonnet", False)[-1][2] == BreakerState.OPEN  # probe failed
    clock.now += 31
    board.poll()
    assert board.record("agent:claude/sonnet", True)[-1] == (
        "agent:claude/sonnet", BreakerState.HALF_OPEN, BreakerState.CLOSED)
    events = kinds(store, "degradation.breaker")
    assert [(e["from"], e["state"]) for e in events] == [
        ("closed", "open"), ("open", "half_open"), ("half_open", "open"),
        ("open", "half_open"), ("half_open", "closed")]
    assert all(e["component"] == "agent:claude/sonnet" for e in events)
    # a resumed mission reads its breakers back
    board.record("verification", False)
    board.record("verification", False)
    again = BreakerBoard(2, 30.0, clock=clock)
    again.bind(store, mid, "reduce_workers")
    assert again.state("verification") == BreakerState.OPEN
    assert again.state("agent:claude/sonnet") == BreakerState.CLOSED


def plugin_for(strategy: str, **degradation: object) -> CircuitBreakerPlugin:
    config = MissionConfig()
    config.degradation.fallback_strategy = strategy  # type: ignore[assignment]
    config.degradation.failure_threshold = 2
    config.degradation.reset_timeout = 30.0
    for key, value in degradation.items():
        setattr(config.degradation, key, value)
    config.scheduler.model = "opus"
    return CircuitBreakerPlugin(PluginConfig(), config)


def feed(plugin: CircuitBreakerPlugin, store: Store, mid: int, events: list[tuple[str, dict]]) -> None:
    observer = plugin.observers()[0]
    ctx = ObserverContext(store=store, mission_id=mid)

    async def main() -> None:
        for n, (kind, payload) in enumerate(events, start=1):
            await observer.on_event(Event(id=n, ts=0.0, kind=kind, mission_id=mid, unit_id=None,
                                          payload=payload), ctx)

    observer.start_after(ctx)
    anyio.run(main)


def session(attempt: int, role: str, model: str, status: str, reason: str | None) -> list[tuple[str, dict]]:
    return [("attempt.started", {"attempt_id": attempt, "role": role, "backend": "claude",
                                 "model": model}),
            ("attempt.finished", {"attempt_id": attempt, "status": status,
                                  "failure_reason": reason})]


@pytest.mark.parametrize(("strategy", "limit", "model", "single"), [
    ("reduce_workers", 2, None, False),
    ("simple", 2, None, True),
    ("pause", 0, None, False),
    ("fallback_model", 4, "haiku", False),
])
def test_a_529_storm_degrades_by_the_strategy_and_recovery_lifts_it(
    store: Store, strategy: str, limit: int, model: str | None, single: bool
) -> None:
    mid = mission(store)
    plugin = plugin_for(strategy, fallback_model="haiku")
    storm = [*session(1, "worker", "opus", "error", "overloaded"),
             *session(2, "worker", "opus", "error", "overloaded")]
    feed(plugin, store, mid, storm)
    assert plugin.dispatch_limit(4) == limit
    options = plugin.worker_options({}, WorkerOptions())
    assert options.model == model and options.single_pass is single
    assert options.speculate is not single  # simple: one agent per unit, no branches
    applied = kinds(store, "degradation.applied")
    assert len(applied) == 1 and applied[0]["components"] == ["agent:claude/opus"]
    # the storm ends: after reset_timeout one probe runs, its success lifts everything
    assert plugin.board is not None
    plugin.board.get("agent:claude/opus")._opened_at -= 31  # the timeout passed
    assert plugin.dispatch_limit(4) == 1  # half-open: one probe
    feed(plugin, store, mid, session(3, "worker", "opus", "completed", None))
    assert plugin.dispatch_limit(4) == 4
    assert plugin.worker_options({}, WorkerOptions()) == WorkerOptions()
    assert len(kinds(store, "degradation.lifted")) == 1
    states = [e["state"] for e in kinds(store, "degradation.breaker")]
    assert states == ["open", "half_open", "closed"]


def test_agent_limits_do_not_count_and_verification_and_push_have_breakers(store: Store) -> None:
    mid = mission(store)
    plugin = plugin_for("reduce_workers")
    feed(plugin, store, mid, [
        *session(1, "worker", "opus", "failed", "max_turns"),
        *session(2, "worker", "opus", "budget", "budget"),
        *session(3, "reviewer", "opus", "error", "overloaded"),
        ("verification.finished", {"status": "failed"}),  # the tests failed: it worked
        ("verification.finished", {"status": "error"}),
        ("verification.finished", {"status": "timeout"}),
        ("push.result", {"ok": False, "rejected": True}),
    ])
    assert plugin.board is not None
    assert plugin.board.state("agent:claude/opus") == BreakerState.CLOSED
    assert plugin.board.get("reviewer").failures == 1
    assert plugin.board.state("verification") == BreakerState.OPEN
    assert plugin.board.get("push").failures == 1
    assert plugin.dispatch_limit(4) == 2
