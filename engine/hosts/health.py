"""Health checks of the hosts: a failing host is drained (its breaker opens)."""

from __future__ import annotations

from engine.hosts.base import HostFleet, HostState


def check_hosts(fleet: HostFleet, states: list[HostState] | None = None) -> list[str]:
    """Check ``states`` (default: every host); drain the failing ones, re-admit drained ones
    that pass. Returns one note per change. Blocking: run it in a worker thread from async code.
    """
    notes = []
    for state in fleet.states if states is None else states:
        problem = state.host.check()
        if problem and fleet.drain(state.host.name, problem):
            notes.append(f"host {state.host.name} drained: {problem}")
        elif problem:  # still failing: the breaker stays open for another period
            state.drained_at = fleet.clock()  # type: ignore[operator]
        elif state.drained_reason is not None:
            notes.append(f"host {state.host.name} is healthy again (was: {state.drained_reason})")
            state.drained_reason = None
    return notes
