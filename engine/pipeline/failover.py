"""Draining a failing host during a mission and re-dispatching its unit elsewhere.

After an agent session on a host fails, the host's health check runs again: a host that fails
it is drained (``host.drained``: its breaker opens, dispatch skips its slots) and the unit the
failure hit goes back to ``ready`` with the reason, its attempt not counted (the host failed,
not the unit). Drained hosts are checked again every ``recheck_seconds`` (half-open) and
re-admitted when they pass (``host.restored``). A session *lost* to part of a host that still
passes its check (a Ray node died: the host said so with ``session_lost``) sends its unit back
the same way (``host.session_lost``) without draining the host.
"""

from __future__ import annotations

import anyio

from engine.hosts.base import HostState
from engine.hosts.health import check_hosts
from engine.models import UnitStatus
from engine.runtime import Runtime
from engine.store import IllegalTransition


async def after_failed_session(rt: Runtime, slot: int, unit_id: str | None,
                               lost: str | None = None) -> bool:
    """Check the host of ``slot`` after a failed session; True when its unit was sent
    elsewhere: the host was drained, or the session was ``lost`` to part of a host that still
    passes its check (a Ray node died: ``host.session_lost``; the host stays in service)."""
    fleet = rt.hosts
    if fleet is None:
        return False
    state = fleet.state_of(slot)
    if state.drained_reason is not None:
        return True
    notes = await anyio.to_thread.run_sync(check_hosts, fleet, [state])
    host = state.host.name
    if state.drained_reason is None:
        if lost is None:
            return False
        rt.store.append_event("host.session_lost", mission_id=rt.mission_id, unit_id=unit_id,
                              host=host, host_kind=state.host.kind, reason=lost)
        rt.log(f"host {host}: {lost}", level="warning")
        if unit_id is not None:
            _redispatch(rt, unit_id, f"host {host}: {lost}: re-dispatched")
        return True
    rt.store.append_event("host.drained", mission_id=rt.mission_id, unit_id=unit_id,
                          host=host, host_kind=state.host.kind, reason=state.drained_reason)
    for note in notes:
        rt.log(note, level="warning")
    if not fleet.healthy():
        rt.log("every host is drained: no agent can run until one is healthy again",
               level="error")
    if unit_id is not None:
        _redispatch(rt, unit_id, f"host {host} drained ({state.drained_reason}): "
                                 "re-dispatched to another host")
    return True


def _redispatch(rt: Runtime, unit_id: str, reason: str) -> None:
    """Send ``unit_id`` back to ``ready`` with ``reason``; its last attempt is not counted."""
    unit = rt.units.get(unit_id)
    if unit is None:
        return
    fields = {"attempt_count": max(0, unit.attempt_count - 1)}
    if unit.status == UnitStatus.READY:
        rt.store.update("units", unit_id, reason=reason, **fields)
        rt.log(f"unit {unit_id}: {reason}", unit_id=unit_id)
    elif unit.status == UnitStatus.FAILED:
        try:
            rt.units.move(unit_id, UnitStatus.READY, reason=reason, **fields)
        except IllegalTransition:
            pass


def take_due_rechecks(rt: Runtime) -> list[HostState]:
    """Drained hosts whose recheck time has come (half-open); their clock restarts now, so a
    check is never started twice."""
    fleet = rt.hosts
    if fleet is None:
        return []
    due = fleet.due_rechecks()
    for state in due:
        state.drained_at = fleet.clock()  # type: ignore[operator]
    return due


async def recheck_drained(rt: Runtime, due: list[HostState]) -> None:
    """Check ``due`` hosts again; a host that passes is re-admitted (``host.restored``)."""
    if rt.hosts is None or not due:
        return
    await anyio.to_thread.run_sync(check_hosts, rt.hosts, due)
    for state in due:
        if state.drained_reason is None:
            rt.store.append_event("host.restored", mission_id=rt.mission_id,
                                  host=state.host.name)
