"""The mission runner: the lifecycle of one mission (lock, create or adopt for resume,
heartbeat, run the epoch pipeline, finish, chain the next one).

Host-agnostic: the Textual app runs :meth:`MissionRunner.run` as a worker, ``mc --no-ui``
runs it under ``anyio.run``. Everything it does is a row or an event in the store.
"""

from __future__ import annotations

import threading
import time

import anyio

from engine.agents import AgentBackend
from engine.config import MissionConfig
from engine.gitops import GitError
from engine.llm import LlmCallFailed
from engine.mission import (
    MissionBusy,
    MissionLock,
    MissionOutcome,
    adopt_for_resume,
    close_out,
    create_mission,
    find_resumable,
    finish_mission,
    heartbeat,
)
from engine.models import MissionStatus, UnitStatus
from engine.orphans import end_orphans
from engine.pipeline.assess import verify_baseline
from engine.pipeline.epochs import EpochPipeline
from engine.pipeline.state import MissionState, Stop, leaf_exceptions
from engine.plugins import PluginError, PluginManager
from engine.runtime import FatalAgentError, Runtime
from engine.store import Store
from engine.strategy.backlog import Backlog
from engine.strategy.chain import next_objective as strategist_next_objective
from engine.wiring import MissionSetupError, check_target, wire_runtime

HEARTBEAT_SECONDS = 2.0
# everything else that returns is 1; the same numbers as mc_tui/exit_codes.py
EXIT_CODES = {MissionStatus.COMPLETED: 0, MissionStatus.NOT_PUSHED: 3}


class MissionRunner:
    def __init__(
        self,
        config: MissionConfig,
        store: Store,
        *,
        backend: AgentBackend | None = None,
        resume: bool = False,
        auto_approve: bool = False,
        chain: bool = False,
        objective: str | None = None,
        parent_mission_id: int | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.backend = backend
        self.resume = resume
        self.auto_approve = auto_approve
        self.chain = chain
        self.objective = objective or config.target.objective
        self.parent_mission_id = parent_mission_id
        self.mission_id: int | None = None
        self.rt: Runtime | None = None
        self.state: MissionState | None = None
        self.resuming = False
        try:
            self.plugins = PluginManager.load(config)
        except PluginError as exc:
            raise MissionSetupError(str(exc)) from None
        self.started = time.monotonic()
        self.lock = MissionLock(config.state_dir())

    # ------------------------------------------------------------------ setup
    def prepare(self) -> Runtime:
        """Check everything needed and create (or adopt) the mission row. Idempotent.

        Raises :class:`MissionSetupError` (exit code 2) with a message for the user.
        """
        if self.rt is None:
            try:
                self.rt = self._setup()
            except GitError as exc:  # pool repair / queue reconcile on a broken repo
                self.lock.release()
                raise MissionSetupError(str(exc)) from None
            self.state = MissionState(self.rt, self.plugins, self.started)
            if self.resuming:
                self.state.restore()
        return self.rt

    def _setup(self) -> Runtime:
        backend, repo, notes = check_target(self.config, self.objective, self.backend)
        self.backend = backend
        self.mission_id = self._own_mission()
        return wire_runtime(
            self.config, self.store, backend=backend, repo=repo, mission_id=self.mission_id,
            objective=self.objective, auto_approve=self.auto_approve, notes=notes,
        )

    def _own_mission(self) -> int:
        """Take the lock, end a dead run's agents, then adopt the interrupted mission (resume,
        or the same objective) or create a new one. Returns its id."""
        try:
            self.lock.acquire()  # held until run() ends; the kernel drops it if we die
        except MissionBusy as exc:
            raise MissionSetupError(str(exc)) from None
        # First of all: agents a dead run left alive must not go on editing the worktrees
        # this run is about to adopt, commit and clean.
        end_orphans(self.store)
        mission = find_resumable(self.store)
        self.resuming = mission is not None and (
            self.resume or mission["objective"] == self.objective)
        if mission is not None and self.resuming:
            mission_id = int(mission["id"])
            self.objective = mission["objective"]
            # Wall time counts the time the mission actually ran, not the downtime.
            self.started = time.monotonic() - float(mission["active_s"] or 0.0)
            adopt_for_resume(self.store, mission_id)
            return mission_id
        if self.resume:
            self.lock.release()
            raise MissionSetupError("nothing to resume: no interrupted mission in this store")
        if mission is not None:  # an abandoned mission with another objective
            close_out(self.store, int(mission["id"]), MissionStatus.STOPPED,
                      "superseded by a new mission")
        return create_mission(self.store, self.config, objective=self.objective,
                              parent_mission_id=self.parent_mission_id)

    # ------------------------------------------------------------------ run
    async def run(self) -> MissionOutcome:
        """Run the mission to an end; returns the outcome (``exit_code`` for the host)."""
        rt = self.prepare()
        assert self.state is not None
        beat = Heartbeat(self.store, rt.mission_id, self.state.started)
        beat.start()
        try:
            async with self.plugins.observing(self.store, rt.mission_id):
                return await self._run(rt, self.state)
        finally:
            beat.stop()
            self.lock.release()

    async def _run(self, rt: Runtime, state: MissionState) -> MissionOutcome:
        rt.log(f"mission #{rt.mission_id}: {self.objective}")
        state.aux = await rt.pool.acquire("mc/aux", rt.repo.green_head())
        rt.llm.workdir = state.aux.path
        exit_code = 1
        try:
            status, reason = await plan_while_verifying(state)
            status, reason = await self.plugins.mission_outcome(rt, status, reason)
            exit_code = EXIT_CODES.get(status, 1)
        except FatalAgentError as exc:
            # Resumable once the cause is fixed (log in again, the usage limit resets).
            status, reason = MissionStatus.INTERRUPTED, f"{exc}; fix it, then `mc mission --resume`"
        except (LlmCallFailed, GitError) as exc:
            status, reason = MissionStatus.FAILED, str(exc)
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                self._finish(MissionStatus.INTERRUPTED, "interrupted")
                await rt.pool.release(state.aux)
            raise
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                self._finish(MissionStatus.FAILED, f"engine error: {exc!r}")
            raise
        with anyio.CancelScope(shield=True):
            await rt.pool.release(state.aux)
            self._finish(status, reason)
        next_objective = None
        if self.chain and status == MissionStatus.COMPLETED:
            next_objective = await self._strategize(rt, status, reason)
        return MissionOutcome(
            mission_id=rt.mission_id, status=status, reason=reason,
            exit_code=exit_code, next_objective=next_objective,
        )

    def _finish(self, status: MissionStatus, reason: str) -> None:
        """Record the end. Interrupted missions keep their state for resume; others close out."""
        assert self.mission_id is not None
        current = self.store.get("missions", self.mission_id)
        if current and current["status"] == status and current["ended_at"]:
            return
        if status == MissionStatus.INTERRUPTED:
            finish_mission(self.store, self.mission_id, status, reason)
        else:
            close_out(self.store, self.mission_id, status, reason)

    async def _strategize(self, rt: Runtime, status: MissionStatus, reason: str) -> str | None:
        """The next objective: the strategist's choice from the backlog (engine/strategy/chain.py)."""
        units = [u for u in rt.units.units(rt.mission_id) if u.is_leaf]
        backlog = Backlog(self.store, self.config.discovery.track_weights)
        try:
            proposal = await strategist_next_objective(
                rt.llm.ask, backlog, mission_id=rt.mission_id, objective=self.objective,
                outcome=f"{status}: {reason}",
                merged=[u.title for u in units if u.status == UnitStatus.MERGED],
                failed=[u.title for u in units if u.status == UnitStatus.FAILED],
            )
        except LlmCallFailed as exc:
            rt.log(f"strategist failed: {exc}", level="warning")
            return None
        objective = proposal.next_objective if proposal else None
        self.store.append_event("strategy.proposed", mission_id=rt.mission_id, objective=objective,
                                backlog_id=proposal.backlog_id if proposal else None,
                                rationale=proposal.rationale if proposal else "")
        return objective

    def request_stop(self, reason: str, status: MissionStatus = MissionStatus.STOPPED) -> None:
        if self.state is not None:
            self.state.request_stop(reason, status)


class Heartbeat:
    """Writes the mission's heartbeat and active time every few seconds, whatever the engine
    is doing (planning, waiting for an approval, cooling down), from a daemon thread."""

    def __init__(self, store: Store, mission_id: int, started: float) -> None:
        self._store = store
        self._mission_id = mission_id
        self._started = started
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="mc-heartbeat", daemon=True)

    def start(self) -> None:
        self._beat()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._beat()

    def _beat(self) -> None:
        heartbeat(self._store, self._mission_id, time.monotonic() - self._started)

    def _loop(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            self._beat()


async def run_mission(runner: MissionRunner) -> MissionOutcome:
    """Run one mission, then chained ones while ``chain`` is set and the strategist proposes more."""
    outcome = await runner.run()
    while runner.chain and outcome.next_objective and outcome.status == MissionStatus.COMPLETED:
        runner = type(runner)(
            runner.config, runner.store, backend=runner.backend,
            auto_approve=runner.auto_approve, chain=True,
            objective=outcome.next_objective, parent_mission_id=outcome.mission_id,
        )
        outcome = await runner.run()
    return outcome


async def plan_while_verifying(state: MissionState) -> Stop:
    """Run the epochs with the baseline verification beside the first planning and the first
    agents: none of them needs it (the planner reads the tree, agents work in their own
    worktrees, the verification runs in the verify worktree), so a mission no longer waits
    for its suite before planning and dispatch start. What does need it waits for it
    (``Runtime.baseline_recorded``): every judgement of a verification (a precheck, the merge
    queue, a fixup candidate, a speculation branch), so a failure already there is never
    blamed on a unit. A stop before it is recorded cancels it (a resumed run verifies it
    again); any other early end still waits for its report. With ``baseline = "must_pass"`` the baseline comes first, as before: a
    red one ends the mission before anything (the planner included) runs. Errors come out as
    themselves, not in an exception group."""
    if state.rt.config.target.verification.baseline == "must_pass":
        stop = await verify_baseline(state)
        return stop or await EpochPipeline(state).run()
    ready = anyio.Event()
    state.rt.baseline_ready = ready
    ended: list[Stop] = []

    async def baseline() -> None:
        await verify_baseline(state)  # a red baseline only warns (the policy is not must_pass)
        ready.set()

    async def epochs(tg: anyio.abc.TaskGroup) -> None:
        ended.append(await EpochPipeline(state).run())
        if state.stop.requested:  # stopped before the baseline was recorded: not waited for
            tg.cancel_scope.cancel()  # (a resumed run verifies it again)
        # else (stalled, failed, a plan with nothing to do) its report is still made

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(baseline)
            tg.start_soon(epochs, tg)
    except BaseExceptionGroup as group:
        real = [e for e in leaf_exceptions(group)
                if not isinstance(e, anyio.get_cancelled_exc_class())]
        raise (real or leaf_exceptions(group))[0] from None
    finally:
        state.rt.baseline_ready = None
    return ended[0]
