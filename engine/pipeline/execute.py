"""The execute phase: dispatch ready units to agents, feed the merge queue, run fixups,
until every leaf of the epoch is final.

On a stop (user, budget, wall time) agents are cancelled at once, but the merge queue
drains: verified work that is already paid for still lands.
"""

from __future__ import annotations

import time
import traceback
from typing import Any

import anyio

from engine.dispatch import FATAL_REASONS
from engine.fixup import run_fixup
from engine.gates.fixup_select import count_lint_errors, parse_test_counts
from engine.hosts import running_on
from engine.ledger import Unit, leaf_dependencies, leaves_under, plan_children
from engine.llm import LlmCallFailed
from engine.models import TERMINAL_UNIT_STATUSES, UnitStatus
from engine.pipeline.commands import CommandInbox
from engine.pipeline.failover import (
    after_failed_session,
    recheck_drained,
    take_due_rechecks,
)
from engine.pipeline.ordering import siblings_in_flight, waiting_on
from engine.pipeline.state import EpochResult, MissionState, leaf_exceptions, leaf_tally
from engine.pipeline.stop import StopPolicy
from engine.runtime import FatalAgentError
from engine.speculation import runner_for
from engine.stacking import can_stack, settle_stacks, stack_key
from engine.store import IllegalTransition

TICK_SECONDS = 0.05


class ExecutePhase:
    def __init__(self, state: MissionState, inbox: CommandInbox, policy: StopPolicy) -> None:
        self.state = state
        self.inbox = inbox
        self.policy = policy

    async def run(self, epoch_id: int) -> EpochResult:
        state, rt = self.state, self.state.rt
        result = EpochResult()
        running: set[str] = set()  # units whose task runs
        holding: dict[int, str] = {}  # worker slot -> the unit whose agent holds it
        fixing: set[str] = set()
        agent_scopes: dict[str, anyio.CancelScope] = {}
        workers = rt.config.scheduler.parallel.num_workers
        queue_busy = False
        errors: list[BaseException] = []
        wake = _Waker()

        def agent_done(slot: int, unit_id: str) -> None:
            """``unit_id``'s agent is done with worker ``slot`` (idempotent): only the unit that
            holds the slot gives it back, never a unit whose precheck outlived its hold while
            the slot went to another unit."""
            if holding.get(slot) == unit_id:
                del holding[slot]
                rt.give_slot(slot)
                wake.set()

        rt.agent_done = agent_done
        rt.on_slot_freed = wake.set  # a fixup candidate done with its agent, say

        async def unit_task(unit_id: str, slot: int) -> None:
            with anyio.CancelScope() as scope:
                agent_scopes[f"unit:{unit_id}"] = scope
                host = rt.hosts.host_of(slot) if rt.hosts else None
                placed = None
                try:
                    unit_row = rt.units.require(unit_id).row  # plugins read plain dicts
                    options = state.plugins.worker_options(unit_row)
                    notes = await anyio.to_thread.run_sync(state.plugins.worker_notes, rt, unit_row)
                    # run_unit, or several branches of it (engine/speculation.py)
                    run = runner_for(rt.config, unit_row, options.speculate)
                    with running_on(host) as placed:
                        outcome = await run(rt, unit_id, slot, model=options.model,
                                            single_pass=options.single_pass, notes=notes,
                                            templates=options.templates)
                    if host is not None and self.session_failed(unit_id, outcome.agent_ok) \
                            and await after_failed_session(rt, slot, unit_id, placed.lost):
                        outcome.retry_after = None  # the host failed, not the unit
                    state.plugins.session_ended(rt, outcome.agent_ok)
                    # its precheck failed: the loop starts its fixup (start_fixups)
                    if outcome.retry_after:
                        state.not_before[unit_id] = time.monotonic() + outcome.retry_after
                except Exception as exc:
                    self.unit_error(unit_id, exc, errors)
                    if host is not None:  # the host may be why: drained, the unit goes on
                        await after_failed_session(rt, slot, unit_id,
                                                   placed.lost if placed else None)
                finally:
                    agent_scopes.pop(f"unit:{unit_id}", None)
                    running.discard(unit_id)
                    agent_done(slot, unit_id)
                    wake.set()

        async def fixup_task(unit_id: str, detail: str) -> None:
            with anyio.CancelScope() as scope:
                agent_scopes[f"fixup:{unit_id}"] = scope
                try:
                    unit_row = rt.units.require(unit_id).row
                    notes = await anyio.to_thread.run_sync(state.plugins.worker_notes, rt, unit_row)
                    await run_fixup(rt, unit_id, detail, notes=notes)
                except Exception as exc:
                    self.unit_error(unit_id, exc, errors)
                finally:
                    agent_scopes.pop(f"fixup:{unit_id}", None)
                    fixing.discard(unit_id)
                    wake.set()

        async def queue_task() -> None:
            nonlocal queue_busy
            try:
                # the loop starts the fixups of its conflicts and culprits (start_fixups)
                await rt.queue.run_once()
            except Exception as exc:  # e.g. the verification cannot run at all
                errors.append(exc)
            finally:
                queue_busy = False
                wake.set()

        async with anyio.create_task_group() as tg:
            # Units left in FIXUP by a crash are repaired again.
            for unit in state.epoch_units(epoch_id):
                if unit.status == UnitStatus.FIXUP:
                    self.start_fixup(tg, fixup_task, fixing, unit.id)
            while True:
                self.inbox.take()
                if errors:
                    tg.cancel_scope.cancel()
                    break
                units = state.epoch_units(epoch_id)
                if not state.stop.requested:
                    self.policy.check_limits()
                if state.stop.requested:
                    for scope in list(agent_scopes.values()):
                        scope.cancel()
                    # queued work drains, unless it cannot be judged yet (it stays queued)
                    if not queue_busy and (rt.queue.pending() == 0 or not rt.baseline_known):
                        result.stop = (state.stop.status, state.stop.reason)
                        tg.cancel_scope.cancel()
                        break
                else:
                    units = self.update_readiness(units)
                    due = take_due_rechecks(rt)
                    if due:
                        tg.start_soon(recheck_drained, rt, due)
                    if not state.paused:
                        self.dispatch(tg, unit_task, units, running, holding, workers)
                    self.start_fixups(tg, fixup_task, fixing, units)
                # also with stacked_branches off: a resumed run may hold stacked branches
                if not queue_busy and settle_stacks(rt, units):
                    wake.set()  # withdrawn units are BLOCKED or READY again
                if not queue_busy and rt.baseline_known and rt.queue.pending() > 0:
                    queue_busy = True  # (its verifications are judged against the baseline)
                    tg.start_soon(queue_task)
                done = all(u.status in TERMINAL_UNIT_STATUSES for u in units if u.is_leaf)
                if done and not running and not fixing and not queue_busy and rt.queue.pending() == 0:
                    break
                await wake.wait(TICK_SECONDS * 4)
        rt.agent_done = None
        rt.on_slot_freed = None
        rt.ready_waiting = 0
        if errors:
            raise errors[0]

        units = state.epoch_units(epoch_id)
        self.roll_up_parents(units)
        result.merged, result.failed = leaf_tally(units)
        last = state.store.query(
            "SELECT output FROM verifications WHERE mission_id = ? AND (status = 'passed' OR "
            "accepted = 1) ORDER BY id DESC LIMIT 1", (rt.mission_id,),
        )
        if last:
            result.tests_passed, result.tests_failed = parse_test_counts(last[0]["output"])
            result.lint_errors = count_lint_errors(last[0]["output"])
        return result

    # ------------------------------------------------------------------ scheduling
    def ready(self, units: list[Unit]) -> list[Unit]:
        """Ready leaves in dispatch order: priority, then the most leaves waiting on it
        downstream (:func:`waiting_on`: the critical path first), then the fewest siblings
        in flight (:func:`siblings_in_flight`), age, then the plugins' ``order_ready`` (which
        sees plain dicts and may only reorder them)."""
        ready = [u for u in units if u.is_leaf and u.status == UnitStatus.READY]
        downstream = waiting_on(units) if ready else {}
        busy = siblings_in_flight(units) if ready else {}
        ordered = sorted(ready, key=lambda u: (u.priority, -downstream.get(u.id, 0),
                                               busy.get(u.id, 0), u.created_at))
        by_id = {u.id: u for u in ordered}
        return [by_id[row["id"]] for row in self.state.plugins.order_ready([u.row for u in ordered])]

    def dispatch(
        self, tg: Any, unit_task: Any, units: list[Unit], running: set[str],
        holding: dict[int, str], workers: int,
    ) -> None:
        """Start READY leaves on free worker slots, up to the dispatch limit. ``holding``
        counts the units whose agent holds a slot (a unit in its precheck no longer does);
        ``rt.ready_waiting`` is left at the number that found no slot."""
        state, rt = self.state, self.state.rt
        limit = state.plugins.dispatch_limit(workers)
        rt.worker_limit = limit
        now = time.monotonic()
        waiting = 0
        while True:  # one at a time: each start changes the order (siblings in flight)
            candidates = [u for u in self.ready(units) if u.id not in running
                          and state.not_before.get(u.id, 0) <= now]
            if not candidates:
                break
            slot = min((s for s in rt.free_slots
                        if s < workers and (rt.hosts is None or rt.hosts.usable(s))), default=None)
            # every busy worker slot counts: units' agents and fixup candidates borrowing one
            busy = sum(1 for s in range(workers) if s not in rt.free_slots)
            if busy >= limit - rt.fixups_waiting or slot is None:  # repairs go first
                waiting = len(candidates)
                break
            unit = candidates[0]
            rt.free_slots.discard(slot)
            running.add(unit.id)
            holding[slot] = unit.id
            tg.start_soon(unit_task, unit.id, slot)
            units = [u.model_copy(update={"status": UnitStatus.RUNNING}) if u.id == unit.id
                     else u for u in units]
        if rt.ready_waiting and not waiting:
            rt.poke_slots()  # fixup candidates may borrow the idle worker slots again
        rt.ready_waiting = waiting

    def session_failed(self, unit_id: str, agent_ok: bool) -> bool:
        """Whether a unit's session ended badly (its host's health is checked then)."""
        unit = self.state.rt.units.get(unit_id)
        return not agent_ok or unit is None or unit.status in (UnitStatus.READY,
                                                               UnitStatus.FAILED)

    def unit_error(self, unit_id: str, exc: Exception, errors: list[BaseException]) -> None:
        """One unit's trouble fails that unit; only auth / usage-limit problems stop the mission."""
        state, rt = self.state, self.state.rt
        leaves = leaf_exceptions(exc)
        for leaf in leaves:
            if isinstance(leaf, FatalAgentError):
                errors.append(leaf)
                return
            if isinstance(leaf, LlmCallFailed) and leaf.reason in FATAL_REASONS:
                errors.append(FatalAgentError(FATAL_REASONS[leaf.reason]))
                return
        reason = "; ".join(f"{type(leaf).__name__}: {leaf}" for leaf in leaves)
        trace = "".join(traceback.format_exception(exc))[-6000:]  # for whoever debugs it
        rt.log(f"unit {unit_id} failed: {reason}", level="error", unit_id=unit_id, traceback=trace)
        try:
            self.state.rt.units.move(unit_id, UnitStatus.FAILED, reason=reason[:2000])
        except IllegalTransition:
            pass  # already terminal (e.g. merged by the queue meanwhile)
        state.plugins.session_ended(rt, False)

    def start_fixups(self, tg: Any, fixup_task: Any, fixing: set[str], units: list[Unit]) -> None:
        """Start the fixup of every leaf in FIXUP without one, after the dispatch pass (the
        units the queue's promotions made ready come first for the worker slots). The queue
        moves a culprit or a conflicting unit to FIXUP as soon as it knows, also in the
        middle of a long speculative run: its fixup starts then, not when the run ends."""
        for unit in units:
            if unit.is_leaf and unit.status == UnitStatus.FIXUP and unit.id not in fixing:
                self.start_fixup(tg, fixup_task, fixing, unit.id)

    def start_fixup(self, tg: Any, fixup_task: Any, fixing: set[str], unit_id: str) -> None:
        if unit_id in fixing:
            return
        unit = self.state.rt.units.get(unit_id)
        if unit is None or unit.status != UnitStatus.FIXUP:
            return
        fixing.add(unit_id)
        tg.start_soon(fixup_task, unit_id, unit.reason or "verification failed")

    # ------------------------------------------------------------------ the plan tree
    def update_readiness(self, units: list[Unit]) -> list[Unit]:
        """PLANNED leaves become READY when their dependencies are merged, BLOCKED if one
        failed; returns ``units`` with those moves applied."""
        status = {u.id: u.status for u in units}
        children = plan_children(units)
        for unit in units:
            if not unit.is_leaf or unit.status != UnitStatus.PLANNED:
                continue
            # The planner already resolves a leaf's dependencies to leaves (inherited ones
            # included); an inner node id is expanded to its leaves all the same.
            leaf_deps = leaf_dependencies(unit, units, children)
            states = [status[d] for d in leaf_deps if d in status]
            if any(s in (UnitStatus.FAILED, UnitStatus.BLOCKED, UnitStatus.CANCELLED) for s in states):
                self.state.rt.units.move(unit.id, UnitStatus.BLOCKED, reason="a dependency failed")
                status[unit.id] = UnitStatus.BLOCKED
            elif all(s == UnitStatus.MERGED for s in states) or self.stackable(unit, units):
                self.state.rt.units.move(unit.id, UnitStatus.READY)
                status[unit.id] = UnitStatus.READY
        return [u if u.status == status[u.id] else u.model_copy(update={"status": status[u.id]})
                for u in units]

    def stackable(self, unit: Unit, units: list[Unit]) -> bool:
        """With ``[scheduler] stacked_branches``: every dependency is merged or its agent is
        done (:func:`engine.stacking.can_stack`), and no stack on these very heads was refused
        (engine/stacking.py)."""
        rt = self.state.rt
        if not rt.config.scheduler.stacked_branches or not can_stack(unit, units):
            return False
        refused = rt.stack_refused.get(unit.id)
        return refused is None or refused != stack_key(unit, units)

    def roll_up_parents(self, units: list[Unit]) -> None:
        """Inner plan nodes take a terminal status from their leaves."""
        for unit in units:
            if unit.is_leaf or unit.status in TERMINAL_UNIT_STATUSES:
                continue
            leaves = leaves_under(unit.id, units)
            states = {u.status for u in units if u.id in leaves}
            final = UnitStatus.MERGED if states == {UnitStatus.MERGED} else UnitStatus.FAILED
            self.state.rt.units.move(
                unit.id, final,
                reason=None if final == UnitStatus.MERGED else "not all parts merged")


class _Waker:
    """Wakes the dispatch loop when a task finishes (else it polls on a slow tick)."""

    def __init__(self) -> None:
        self._event = anyio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self, timeout: float) -> None:
        with anyio.move_on_after(timeout):
            await self._event.wait()
        self._event = anyio.Event()
