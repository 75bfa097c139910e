"""The objects one running mission shares between the controller, dispatch and fixup."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio

from engine.agents import AgentBackend
from engine.config import MissionConfig
from engine.gitops import GitRepo, MergeQueue, WorkspacePool
from engine.hosts import HostFleet
from engine.ledger import EpochLedger, UnitLedger
from engine.llm import LlmCaller
from engine.store import Store


class FatalAgentError(RuntimeError):
    """An agent failure that must stop the mission at once (auth, usage limit)."""


@dataclass
class Recheck:
    """The re-run of a unit's rejected precheck (``flaky_reruns``), in flight while the
    unit's fixup round already starts (engine/checks.py ``precheck``, engine/fixup.py
    ``run_fixup``): ``accepted`` once ``done`` is set tells the round whether the failure was
    flaky (the round is called off and the unit's own work goes to the queue)."""

    head: str
    done: anyio.Event = field(default_factory=anyio.Event)
    accepted: bool = False

    def resolve(self, accepted: bool) -> None:
        """Record the re-run's verdict (the first call counts)."""
        if not self.done.is_set():
            self.accepted = accepted
            self.done.set()

    async def verdict(self) -> bool:
        """Wait for the re-run: True when it was accepted (the first failure was flaky)."""
        await self.done.wait()
        return self.accepted


@dataclass
class Runtime:
    config: MissionConfig
    store: Store
    repo: GitRepo
    pool: WorkspacePool
    queue: MergeQueue
    backend: AgentBackend
    llm: LlmCaller
    mission_id: int
    objective: str
    auto_approve: bool = False
    free_slots: set[int] = field(default_factory=set)
    slot_ready: anyio.Event = field(default_factory=anyio.Event)
    hosts: HostFleet | None = None  # [[hosts]]; None: plain local processes (docs/hosts.md)
    # how many worker slots dispatch may fill now (None: all; the circuit breaker lowers it);
    # fixup candidates borrow an idle worker slot only below it (engine/fixup.py)
    worker_limit: int | None = None
    # READY leaves the last dispatch pass could not place for want of a worker slot: while
    # any wait, fixup candidates do not borrow worker slots (engine/fixup_slots.py)
    ready_waiting: int = 0
    # hands a unit's worker slot back once its agent is done, so its precheck does not hold
    # it (set by the execute phase; None: the slot is held until the unit's task ends)
    agent_done: Callable[[int, str], None] | None = None
    # stacked branches (engine/stacking.py): units whose stack could not be built, with the
    # dependency heads it was tried on; they wait for the merges unless those heads change
    stack_refused: dict[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    # set once the baseline verification is recorded: it runs beside the first planning and
    # the first agents; a judgement of a verification (precheck, queue, fixup, speculation
    # branch) waits for it (engine/runner.py). None: nothing to wait for
    baseline_ready: anyio.Event | None = None
    # fixup candidates a round needs (fixup_min_candidates) waiting for a slot: dispatch leaves
    # that many worker slots to them (engine/fixup.py), a repair goes before new work
    fixups_waiting: int = 0
    # units whose precheck was skipped because the merge queue would verify them at once, not
    # submitted yet: while any is, the queue is not idle for the next (engine/checks.py)
    prechecks_skipped: set[str] = field(default_factory=set)
    # called when a slot is given back (set by the execute phase: a freed slot is dispatched
    # at once rather than on the loop's next tick)
    on_slot_freed: Callable[[], None] | None = None
    # rejected prechecks whose re-run is in flight while the unit's fixup round starts
    # (engine/checks.py, engine/fixup.py); the round takes its entry
    rechecks: dict[str, Recheck] = field(default_factory=dict)
    _check_limiter: anyio.CapacityLimiter | None = field(default=None, init=False)
    units: UnitLedger = field(init=False)  # the one writer of unit status (engine/ledger.py)
    epochs: EpochLedger = field(init=False)  # epochs' decisions, with their events

    def __post_init__(self) -> None:
        self.units = UnitLedger(self.store)
        self.epochs = EpochLedger(self.store)

    def log(self, message: str, *, level: str = "info", unit_id: str | None = None, **extra: Any) -> None:
        self.store.append_event(
            "log", mission_id=self.mission_id, unit_id=unit_id, level=level, message=message, **extra
        )

    async def take_slot(self, candidates: Sequence[int],
                        usable: Callable[[int], bool] | None = None) -> int:
        """Reserve a free slot number among ``candidates``, the first free one in their order
        for which ``usable`` (if given) holds; waits when there is none."""
        while True:
            slot = self.try_take_slot(candidates, usable)
            if slot is not None:
                return slot
            if self.slot_ready.is_set():  # never replace an event other waiters still wait on
                self.slot_ready = anyio.Event()
            await self.slot_ready.wait()

    @property
    def baseline_known(self) -> bool:
        """Whether verifications can be judged now (the baseline is recorded, or not awaited)."""
        return self.baseline_ready is None or self.baseline_ready.is_set()

    async def baseline_recorded(self) -> None:
        """Wait until verifications can be judged (:attr:`baseline_known`)."""
        if self.baseline_ready is not None:
            await self.baseline_ready.wait()

    def try_take_slot(self, candidates: Sequence[int],
                      usable: Callable[[int], bool] | None = None) -> int | None:
        """:meth:`take_slot` without waiting: None when no slot is free and usable now."""
        for slot in candidates:
            if slot in self.free_slots and (usable is None or usable(slot)):
                self.free_slots.discard(slot)
                return slot
        return None

    def give_slot(self, slot: int) -> None:
        self.free_slots.add(slot)
        self.slot_ready.set()
        if self.on_slot_freed is not None:
            self.on_slot_freed()

    def poke_slots(self) -> None:
        """Wake the slot waiters to look again (what makes a slot usable changed)."""
        self.slot_ready.set()

    def release_worker_slot(self, slot: int, unit_id: str) -> None:
        """Tell the execute phase ``unit_id``'s agent is done with worker ``slot`` (no-op
        outside it, and when the slot is no longer that unit's)."""
        if self.agent_done is not None:
            self.agent_done(slot, unit_id)

    @property
    def check_limiter(self) -> anyio.CapacityLimiter:
        """At most ``num_workers`` verifications in agents' worktrees at once: units'
        prechecks and fixup candidates' verifications (neither holds an agent slot: a slot
        counts agents)."""
        if self._check_limiter is None:
            self._check_limiter = anyio.CapacityLimiter(
                self.config.scheduler.parallel.num_workers)
        return self._check_limiter
