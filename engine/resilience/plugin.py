"""The built-in ``circuit_breaker`` plugin: breakers per component and graceful degradation.

An observer feeds a :class:`~engine.resilience.board.BreakerBoard` from the event stream
(``attempt.started`` / ``attempt.finished``, ``verification.finished``, ``push.result``);
three hooks degrade the mission while any breaker is not closed, by ``[degradation]
fallback_strategy``:

- ``reduce_workers``: half the workers (``dispatch_limit``);
- ``simple``: half the workers, each in one pass (no architect pass), no speculation
  branches (one agent per unit; the original tool's "fall back to simpler strategies");
- ``fallback_model``: workers run on ``fallback_model`` while the breaker of the configured
  worker model is open (unless the fallback's own breaker is open too);
- ``pause``: no new session is dispatched while a breaker is open.

Half-open (after ``reset_timeout``): one session at a time probes. The first breaker that
opens appends ``degradation.applied``; when the last one closes, ``degradation.lifted``:
the mission goes back to full strength by itself.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from engine.models import Event
from engine.plugins import ObserverContext, Plugin, PluginConfig, WorkerOptions
from engine.resilience.board import (
    PUSH,
    VERIFICATION,
    BreakerBoard,
    agent_component,
    component_of_session,
    session_verdict,
)
from engine.resilience.breaker import BreakerState, CircuitBreaker, degraded_workers

if TYPE_CHECKING:
    from engine.config import MissionConfig

Transition = tuple[str, BreakerState, BreakerState]


class CircuitBreakerPlugin(Plugin):
    """``[degradation]``: breakers per component (agent backend/model, planner, reviewer,
    verification, push) and the degradation of dispatch while one is open."""

    name = "circuit_breaker"
    builtin = True
    order = 40

    def __init__(self, config: PluginConfig, mission: MissionConfig) -> None:
        super().__init__(config, mission)
        d = mission.degradation
        self.board = BreakerBoard(d.failure_threshold, d.reset_timeout) if d.enabled else None
        self.worker_component = agent_component(mission.agent.backend, mission.scheduler.model)
        self.degraded = False

    @property
    def breaker(self) -> CircuitBreaker | None:
        """The breaker of the configured worker backend and model (None: off)."""
        return None if self.board is None else self.board.get(self.worker_component)

    def observers(self) -> list[BreakerObserver]:
        return [] if self.board is None else [BreakerObserver(self)]

    # ------------------------------------------------------------------ hooks
    def dispatch_limit(self, workers: int) -> int:
        if self.board is None:
            return workers
        self.transitions(self.board.poll())
        return degraded_workers(workers, self.mission.degradation.fallback_strategy,
                                self.board.worst())

    def worker_options(self, unit: dict[str, Any], options: WorkerOptions) -> WorkerOptions:
        if self.board is None:
            return options
        d = self.mission.degradation
        worst = self.board.worst()
        model = options.model
        if (d.fallback_strategy == "fallback_model"
                and self.board.state(self.worker_component) == BreakerState.OPEN
                and self.board.state(agent_component(self.mission.agent.backend,
                                                     d.fallback_model)) != BreakerState.OPEN):
            model = d.fallback_model
        simple = d.fallback_strategy == "simple" and worst == BreakerState.OPEN
        # replace(): other plugins' choices (prompt variant, templates) are kept
        return replace(options, model=model, single_pass=options.single_pass or simple,
                       speculate=options.speculate and not simple)

    # ------------------------------------------------------------------ transitions
    def transitions(self, changes: list[Transition]) -> None:
        """Log the transitions and apply / lift the degradation (events on the board's store)."""
        board = self.board
        if board is None or not changes or board.store is None:
            return
        store, mission_id = board.store, board.mission_id
        strategy = self.mission.degradation.fallback_strategy
        for component, _before, after in changes:
            if after == BreakerState.OPEN:
                store.append_event(
                    "log", mission_id=mission_id, level="warning",
                    message=f"circuit breaker {component} open after "
                    f"{board.get(component).failures} failure(s) in a row; tried again in "
                    f"{board.reset_timeout:g}s",
                )
        degraded = board.worst() != BreakerState.CLOSED
        if degraded and not self.degraded:
            self.degraded = True
            store.append_event("degradation.applied", mission_id=mission_id, strategy=strategy,
                               components=sorted(board.not_closed()),
                               message=f"degraded: {strategy} while "
                               f"{', '.join(sorted(board.not_closed()))} is not closed")
        elif not degraded and self.degraded:
            self.degraded = False
            store.append_event("degradation.lifted", mission_id=mission_id, strategy=strategy,
                               message=f"every circuit breaker closed: {strategy} lifted")


class BreakerObserver:
    """Counts the outcome of each session, verification and push for its component."""

    def __init__(self, plugin: CircuitBreakerPlugin) -> None:
        self.plugin = plugin
        self.sessions: dict[int, str] = {}  # attempt id -> component

    def start_after(self, ctx: ObserverContext) -> int:
        """Bind the board to the mission (reading back a resumed mission's breakers) and
        count only what happens from now on: earlier outcomes are in the ``breakers`` rows."""
        board = self.plugin.board
        assert board is not None
        board.bind(ctx.store, ctx.mission_id, self.plugin.mission.degradation.fallback_strategy)
        self.plugin.degraded = board.worst() != BreakerState.CLOSED
        return ctx.store.last_event_id()

    async def on_event(self, event: Event, ctx: ObserverContext) -> None:
        board = self.plugin.board
        assert board is not None
        p = event.payload
        verdict: bool | None = None
        component = ""
        if event.kind == "attempt.started":
            self.sessions[int(p.get("attempt_id") or 0)] = component_of_session(
                str(p.get("role")), str(p.get("backend")), str(p.get("model")))
            return
        if event.kind == "attempt.finished":
            component = self.sessions.pop(int(p.get("attempt_id") or 0), "")
            verdict = session_verdict(str(p.get("status")), p.get("failure_reason"))
        elif event.kind == "verification.finished":
            component, verdict = VERIFICATION, p.get("status") not in ("timeout", "error")
        elif event.kind == "push.result":
            component, verdict = PUSH, bool(p.get("ok"))
        if component and verdict is not None:
            self.plugin.transitions(board.record(component, verdict))

