"""The order READY units start in (``ExecutePhase.ready``): how many leaves wait on a unit
downstream, and how many of its plan-tree siblings could conflict with it."""

from __future__ import annotations

from engine.ledger import Unit, chains, leaves_under, plan_children
from engine.models import UnitStatus

IN_FLIGHT = frozenset({UnitStatus.RUNNING, UnitStatus.REVIEWING, UnitStatus.QUEUED,
                       UnitStatus.MERGING, UnitStatus.VERIFYING, UnitStatus.FIXUP})


def siblings_in_flight(units: list[Unit]) -> dict[str, int]:
    """Per READY leaf (by id), how many of its plan-tree siblings are in flight (started, not
    merged yet) and could conflict with it: siblings it depends on, directly or through
    others, or that depend on it are not counted.

    Siblings are parts of one planned piece of work and tend to touch the same files; two
    of them started on the same ``mc/green`` conflict when the second merges (file overlaps
    the planner declared are dependency edges already; these are the ones it did not see).
    Among equally urgent READY units, the one whose siblings are not in flight goes first,
    so siblings tend to start after each other's work has merged: anti-affinity scheduling.
    In the fleet benchmark the conflicting pairs are siblings, and a pair dispatched last
    ended the mission with a fixup round (docs/scaling.md). A sibling on the unit's own
    dependency chain cannot conflict that way: the unit starts on top of its work (merged,
    or a stack base: engine/stacking.py). Counting it made the unit that continues a
    critical chain wait 3.9 s for a worker slot behind units nobody waits for."""
    in_flight: dict[str, set[str]] = {}
    for unit in units:
        if unit.is_leaf and unit.parent_id and unit.status in IN_FLIGHT:
            in_flight.setdefault(unit.parent_id, set()).add(unit.id)
    if not in_flight:
        return {}
    upstream = chains(units)
    out: dict[str, int] = {}
    for unit in units:
        if not (unit.is_leaf and unit.status == UnitStatus.READY and unit.parent_id):
            continue
        contending = {s for s in in_flight.get(unit.parent_id, set())
                      if s not in upstream.get(unit.id, set())
                      and unit.id not in upstream.get(s, set())}
        if contending:
            out[unit.id] = len(contending)
    return out


def waiting_on(units: list[Unit]) -> dict[str, int]:
    """For each leaf, how many leaves not yet started wait on it, directly or through
    others (PLANNED ones, by their dependencies)."""
    waiters: dict[str, set[str]] = {}
    children = plan_children(units)
    for unit in units:
        if unit.is_leaf and unit.status == UnitStatus.PLANNED:
            for dep in unit.dependencies:
                for leaf in leaves_under(dep, units, children):
                    waiters.setdefault(leaf, set()).add(unit.id)
    memo: dict[str, set[str]] = {}

    def down(unit_id: str, seen: frozenset[str]) -> set[str]:
        if unit_id not in memo:
            out: set[str] = set()
            for waiter in waiters.get(unit_id, ()):
                if waiter not in seen:  # a cycle is the planner's bug, not a hang here
                    out |= {waiter} | down(waiter, seen | {waiter})
            memo[unit_id] = out
        return memo[unit_id]

    return {unit_id: len(down(unit_id, frozenset({unit_id}))) for unit_id in waiters}
