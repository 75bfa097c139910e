"""The slots a fixup round's candidates take (``engine/fixup.py``): its own kept slots past
the workers', idle worker slots while no READY unit waits for one, and all of them first
for a unit other units wait on (:func:`blocks_others`)."""

from __future__ import annotations

from collections.abc import Callable

from engine.models import TERMINAL_UNIT_STATUSES
from engine.runtime import Runtime


def blocks_others(rt: Runtime, unit_id: str) -> bool:
    """Whether a leaf not yet merged waits for ``unit_id`` (names it as a dependency: not
    started yet, or stacked on it and held in the merge queue until it merges)."""
    for unit in rt.units.units(rt.mission_id):
        if unit.is_leaf and unit_id in unit.dependencies and unit.status not in (
                TERMINAL_UNIT_STATUSES):
            return True
    return False


def fixup_slots(rt: Runtime, blocking: bool = False) -> tuple[list[int], Callable[[int], bool]]:
    """The slots a fixup candidate may take, in order of preference, and which are usable now.

    First the ``fixup_candidates`` slots kept for fixups (past the workers'), then any worker
    slot that is idle while fewer worker slots are busy than dispatch may fill
    (``Runtime.worker_limit``, which an open circuit breaker lowers) and whose host is not
    drained, and only while no READY unit waits for a worker slot (``Runtime.ready_waiting``:
    a borrowed slot is held for a whole session and its verification, and in the fleet
    benchmark candidates held 26-41 slot-seconds that ready units waited for) unless the
    unit is ``blocking``: other units wait for it to merge (:func:`blocks_others`), so its
    round is on their path and goes first. So a fixup
    round never waits for a worker to finish, and several rounds run at once when workers are idle (a conflict or a culprit holds up the units that depend on it;
    with only the kept slots, rounds ran one after another). At most ``num_workers +
    fixup_candidates`` agents run at once, as before.
    """
    workers = rt.config.scheduler.parallel.num_workers
    kept = list(range(workers, workers + rt.config.green_branch.fixup_candidates))

    def usable(slot: int) -> bool:
        if slot >= workers:
            return True
        if rt.ready_waiting and not blocking:  # a READY unit waits for a slot: it goes first
            return False
        busy = sum(1 for s in range(workers) if s not in rt.free_slots)
        limit = workers if rt.worker_limit is None else rt.worker_limit
        return busy < limit and (rt.hosts is None or rt.hosts.usable(slot))

    return [*kept, *range(workers)], usable


async def round_slots(rt: Runtime, blocking: bool) -> list[int]:
    """The slots of one fixup round's candidates: ``fixup_min_candidates`` it waits for, with
    priority over READY units (dispatch leaves them a worker slot: ``Runtime.fixups_waiting``;
    a repair holds up its unit's merge and whatever is stacked on it or waits for it), then up
    to ``fixup_candidates`` in all on slots free at once (:func:`fixup_slots`), never waited for.

    N-of-M with M fixed made every round cost M sessions: in the fleet benchmark 48 fixup
    sessions (about 190 slot-seconds, more than the 174 s of all the units' own agent time)
    queued behind READY units and ended the mission 10-15 s after the last unit's agent. With
    idle slots a round still gets all its candidates."""
    gb = rt.config.green_branch
    need = min(gb.fixup_min_candidates, gb.fixup_candidates)
    slots: list[int] = []
    try:
        for _ in range(need):
            order, usable = fixup_slots(rt, blocking=True)
            slot = rt.try_take_slot(order, usable)
            if slot is None:
                rt.fixups_waiting += 1
                try:
                    slot = await rt.take_slot(order, usable)
                finally:
                    rt.fixups_waiting -= 1
            slots.append(slot)
    except BaseException:
        for slot in slots:
            rt.give_slot(slot)
        raise
    while len(slots) < gb.fixup_candidates:
        extra = rt.try_take_slot(*fixup_slots(rt, blocking))
        if extra is None:
            break
        slots.append(extra)
    return slots
