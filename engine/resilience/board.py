"""Circuit breakers per component, fed by the mission's event stream, kept in the store.

Components (``component_of_*`` below name them):

- ``agent:<backend>/<model>``: worker sessions (worker, architect, editor, fixup) on one
  backend and model; a session counts as a **failure** when it ends for a reason of the
  backend's own (:data:`FAULTS`: overload, rate limit, API error, timeout, stall, crash, no
  usable output) and as a **success** when it completes; the agent's own limits (max turns,
  budget, refused tools) say nothing about the backend and are not counted;
- ``planner`` (planner, ambition, strategist and objective-check calls) and ``reviewer``:
  the same rule on their sessions;
- ``verification``: a run that could not judge (``timeout``, ``error``) fails, one that
  passed or failed the tests succeeds;
- ``push``: a ``push.result`` that is not ``ok`` fails.

Each breaker is closed / open / half-open (``engine/resilience/breaker.py``): it opens after
``failure_threshold`` failures in a row, is half-open after ``reset_timeout`` seconds (one
probe), and the probe's outcome closes or reopens it. Every transition is written to the
``breakers`` table (one row per mission and component) and appended as a
``degradation.breaker`` event (``component``, ``from``, ``state``, ``failures``,
``strategy``). The board is wall-clock based so that a resumed mission reads its breakers back.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from engine.agents.types import FailureReason
from engine.resilience.breaker import BreakerState, CircuitBreaker
from engine.store import Store

FAULTS = frozenset({
    FailureReason.OVERLOADED, FailureReason.RATE_LIMIT, FailureReason.API_ERROR,
    FailureReason.TIMEOUT, FailureReason.STALLED, FailureReason.CRASH, FailureReason.BAD_OUTPUT,
})
PLANNING_ROLES = ("planner", "ambition", "strategist", "objective_check")
PUSH = "push"
VERIFICATION = "verification"


def agent_component(backend: str, model: str) -> str:
    return f"agent:{backend}/{model}"


def component_of_session(role: str, backend: str, model: str) -> str:
    """The breaker an agent session of ``role`` on ``backend``/``model`` counts for."""
    if role in PLANNING_ROLES:
        return "planner"
    if role == "reviewer":
        return "reviewer"
    return agent_component(backend, model)


def session_verdict(status: str, failure_reason: str | None) -> bool | None:
    """True: a success; False: a failure of the component; None: not counted."""
    if status == "completed":
        return True
    if failure_reason in FAULTS:
        return False
    return None


class BreakerBoard:
    """The breakers of one mission; ``record`` and ``poll`` return the transitions they made."""

    def __init__(self, failure_threshold: int, reset_timeout: float, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self.clock = clock
        self.breakers: dict[str, CircuitBreaker] = {}
        self._seen: dict[str, BreakerState] = {}  # the state last reported per component
        self.store: Store | None = None
        self.mission_id: int | None = None
        self.strategy = ""

    def get(self, component: str) -> CircuitBreaker:
        breaker = self.breakers.get(component)
        if breaker is None:
            breaker = CircuitBreaker(self.failure_threshold, self.reset_timeout, clock=self.clock)
            self.breakers[component] = breaker
            self._seen[component] = BreakerState.CLOSED
        return breaker

    def state(self, component: str) -> BreakerState:
        return self.breakers[component].state if component in self.breakers else BreakerState.CLOSED

    def not_closed(self) -> dict[str, BreakerState]:
        """Components whose breaker is open or half-open, with that state."""
        return {c: b.state for c, b in self.breakers.items() if b.state != BreakerState.CLOSED}

    def worst(self) -> BreakerState:
        """OPEN if any breaker is open, else HALF_OPEN if any is, else CLOSED."""
        states = set(self.not_closed().values())
        for state in (BreakerState.OPEN, BreakerState.HALF_OPEN):
            if state in states:
                return state
        return BreakerState.CLOSED

    # ------------------------------------------------------------------ store
    def bind(self, store: Store, mission_id: int, strategy: str) -> None:
        """Write transitions to ``store``; read back the breakers a resumed mission had."""
        self.store, self.mission_id, self.strategy = store, mission_id, strategy
        for row in store.query("SELECT * FROM breakers WHERE mission_id = ?", (mission_id,)):
            breaker = self.get(row["component"])
            breaker.failures = int(row["failures"])
            breaker._opened_at = row["opened_at"]
            self._seen[row["component"]] = breaker.state

    def _persist(self, component: str, before: BreakerState, after: BreakerState) -> None:
        breaker = self.breakers[component]
        if self.store is None or self.mission_id is None:
            return
        now = time.time()
        with self.store.transaction() as conn:
            conn.execute(
                "INSERT INTO breakers (mission_id, component, state, failures, opened_at, "
                "updated_at) VALUES (?,?,?,?,?,?) ON CONFLICT (mission_id, component) DO UPDATE "
                "SET state = excluded.state, failures = excluded.failures, "
                "opened_at = excluded.opened_at, updated_at = excluded.updated_at",
                (self.mission_id, component, str(after), breaker.failures, breaker._opened_at, now),
            )
            self.store.append_event(
                "degradation.breaker", mission_id=self.mission_id, component=component,
                state=str(after), failures=breaker.failures, strategy=self.strategy,
                reset_timeout=self.reset_timeout, **{"from": str(before)},
            )

    # ------------------------------------------------------------------ updates
    def record(self, component: str, ok: bool) -> list[tuple[str, BreakerState, BreakerState]]:
        """Count one outcome; returns the transitions ``(component, from, to)`` this made
        (a lazily reached half-open included)."""
        breaker = self.get(component)
        changes = self.poll()
        before = self._seen[component]
        failures_before = breaker.failures
        breaker.record(ok)
        after = breaker.state
        if after != before:
            self._seen[component] = after
            self._persist(component, before, after)
            changes.append((component, before, after))
        elif breaker.failures != failures_before and self.store is not None and ok is False:
            self._save_quietly(component)
        return changes

    def poll(self) -> list[tuple[str, BreakerState, BreakerState]]:
        """Report breakers whose timeout turned them half-open since last seen."""
        changes = []
        for component, breaker in self.breakers.items():
            before, after = self._seen[component], breaker.state
            if after != before:
                self._seen[component] = after
                self._persist(component, before, after)
                changes.append((component, before, after))
        return changes

    def _save_quietly(self, component: str) -> None:
        """The failure count of a still-closed breaker (no event: not a transition)."""
        assert self.store is not None
        breaker = self.breakers[component]
        with self.store.transaction() as conn:
            conn.execute(
                "INSERT INTO breakers (mission_id, component, state, failures, opened_at, "
                "updated_at) VALUES (?,?,?,?,?,?) ON CONFLICT (mission_id, component) DO UPDATE "
                "SET failures = excluded.failures, updated_at = excluded.updated_at",
                (self.mission_id, component, str(breaker.state), breaker.failures,
                 breaker._opened_at, time.time()),
            )


def breaker_rows(store: Store, mission_id: int) -> list[dict[str, Any]]:
    """The ``breakers`` rows of a mission (for ``mc status`` and the TUI), worst first."""
    try:
        rows = store.query("SELECT * FROM breakers WHERE mission_id = ?", (mission_id,))
    except Exception:  # a store from before migration 8, opened read-only
        return []
    order = {"open": 0, "half_open": 1, "closed": 2}
    return sorted(rows, key=lambda r: (order.get(r["state"], 3), r["component"]))
