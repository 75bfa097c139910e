"""The epoch loop: plan -> ambition gate -> dispatch -> review -> merge queue -> verify ->
promote/push -> fixup -> objective check -> feedback -> (strategize, chain).

Host-agnostic: the Textual app runs :meth:`Controller.run` as a worker, ``mc --no-ui``
runs it under ``anyio.run``. Everything it does is a row or an event in the store.
"""

from __future__ import annotations

import json
import threading
import time
import traceback
from dataclasses import dataclass
from functools import partial
from typing import Any

import anyio
import pygit2

from engine.agents import AgentBackend, AgentUnavailable, make_backend
from engine.approvals import approve_or_deny
from engine.budget import EmaCostTracker, cooldown_seconds
from engine.config import MissionConfig, unavailable_notes
from engine.dispatch import FATAL_REASONS, run_unit, unit_branch
from engine.fixup import run_fixup
from engine.gates.evaluator import ProgressEvaluator
from engine.gates.fixup_select import count_lint_errors, parse_test_counts
from engine.gates.objective import check_objective
from engine.gitops import GitError, GitRepo, MergeQueue, WorkspacePool
from engine.gitops.baseline import policy_stop
from engine.gitops.branches import apply_base_branch
from engine.gitops.preflight import preflight
from engine.llm import LlmCaller, LlmCallFailed
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
from engine.models import (
    TERMINAL_UNIT_STATUSES,
    CommandKind,
    EpochStatus,
    MissionStatus,
    UnitStatus,
)
from engine.orphans import end_orphans
from engine.planning.ambition import ambition_gate
from engine.planning.planner import PlanningContext, PlanningFailed, RecursivePlanner
from engine.planning.schema import PlanTree
from engine.plugins import EpochView, PluginError, PluginManager
from engine.resilience.breaker import CircuitBreaker
from engine.runtime import FatalAgentError, Runtime
from engine.store import IllegalTransition, Store
from engine.strategy.strategist import propose_next_objective

TICK_SECONDS = 0.05
# Spend may run this far (share of the budget) ahead of the clock before epochs cool down.
COOLDOWN_SLACK = 0.1
HEARTBEAT_SECONDS = 2.0
# everything else that returns is 1; the same numbers as mc_tui/exit_codes.py
EXIT_CODES = {MissionStatus.COMPLETED: 0, MissionStatus.NOT_PUSHED: 3}


class MissionSetupError(RuntimeError):
    """The mission cannot start (bad repo, missing agent CLI, busy). Exit code 2."""


INTERRUPTED_WORK_MESSAGE = (
    "wip: uncommitted work of an agent session a restart cut short (saved by mc)"
)


@dataclass
class EpochResult:
    merged: int = 0
    failed: int = 0
    cost: float = 0.0
    tests_passed: int | None = None  # None: no passing verification to read them from
    tests_failed: int | None = None
    lint_errors: int | None = None
    stop: tuple[MissionStatus, str] | None = None


@dataclass
class _Stop:
    requested: bool = False
    reason: str = ""
    status: MissionStatus = MissionStatus.STOPPED


class Controller:
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
        self.paused = False
        self.stop = _Stop()
        self.ema = EmaCostTracker()
        self.evaluator = ProgressEvaluator()
        self.objective_checks = 0
        try:
            self.plugins = PluginManager.load(config)
        except PluginError as exc:
            raise MissionSetupError(str(exc)) from None
        self.started = time.monotonic()
        self.lock = MissionLock(config.state_dir())
        self._objective_feedback: str | None = None
        self._not_before: dict[str, float] = {}  # unit id -> monotonic time (overload backoff)

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
        return self.rt

    def _setup(self) -> Runtime:
        config = self.config
        if not self.objective.strip():
            raise MissionSetupError("target.objective is empty: say what the mission should achieve")
        backend = self.backend or make_backend(config)
        self.backend = backend
        try:
            backend.check_available()
        except AgentUnavailable as exc:
            raise MissionSetupError(str(exc)) from None
        try:
            repo = GitRepo(config.target.path)
            repo.ensure_green(apply_base_branch(config, repo).name)
            repo_notes = preflight(repo, config.worktree.include, "refs/heads/mc/green")
        except GitError as exc:
            raise MissionSetupError(str(exc)) from None

        try:
            self.lock.acquire()  # held until run() ends; the kernel drops it if we die
        except MissionBusy as exc:
            raise MissionSetupError(str(exc)) from None
        # First of all: agents a dead run left alive must not go on editing the worktrees
        # this run is about to adopt, commit and clean.
        end_orphans(self.store)
        mission = find_resumable(self.store)
        if mission is not None and (self.resume or mission["objective"] == self.objective):
            mission_id = int(mission["id"])
            self.objective = mission["objective"]
            # Wall time counts the time the mission actually ran, not the downtime.
            self.started = time.monotonic() - float(mission["active_s"] or 0.0)
            adopt_for_resume(self.store, mission_id)
            self._restore_feedback(mission_id)
        elif self.resume:
            self.lock.release()
            raise MissionSetupError("nothing to resume: no interrupted mission in this store")
        else:
            if mission is not None:  # an abandoned mission with another objective
                close_out(self.store, int(mission["id"]), MissionStatus.STOPPED,
                          "superseded by a new mission")
            mission_id = create_mission(
                self.store, config, objective=self.objective,
                parent_mission_id=self.parent_mission_id,
            )
        self.mission_id = mission_id
        for note in repo.clear_stale_locks():  # safe: this process now holds the mission
            self.store.append_event("log", mission_id=mission_id, level="info", message=note)
        for note in unavailable_notes(config) + repo_notes:
            self.store.append_event("log", mission_id=mission_id, level="warning", message=note)
        if config.agent.backend == "command":
            self.store.append_event(
                "log", mission_id=mission_id, level="warning",
                message="agent.backend = command reports no cost: sessions count as $0 against "
                "the budget, so scheduler.budget cannot stop this mission",
            )
        if config.agent.permission_mode == "bypassPermissions":
            self.store.append_event(
                "log", mission_id=mission_id, level="warning",
                message="agent.permission_mode = bypassPermissions: agents run with NO permission "
                "checks (any file, any command, .git included); you opted in",
            )
        workers = config.scheduler.parallel.num_workers
        pool = WorkspacePool(repo, config.pool_dir(), workers + config.green_branch.fixup_candidates + 1,
                             include=config.worktree.include)
        continuing = {unit_branch(u["id"]) for u in self.store.units(mission_id)
                      if u["resume_point"] == "continue"}
        if config.scheduler.parallel.pool_dir is None:  # our own old default: ours to move
            for note in pool.migrate_from(config.legacy_pool_dir(), continuing,
                                          INTERRUPTED_WORK_MESSAGE):
                self.store.append_event("log", mission_id=mission_id, level="info", message=note)
        for note in pool.save_uncommitted(continuing, INTERRUPTED_WORK_MESSAGE):
            self.store.append_event("log", mission_id=mission_id, level="info", message=note)
        for note in pool.repair():
            self.store.append_event("log", mission_id=mission_id, level="info", message=note)
        queue = MergeQueue(
            repo, self.store, mission_id=mission_id,
            verify_command=config.target.verification.command,
            verify_timeout=config.target.verification.timeout,
            batch_size=config.merge_queue.batch_size,
            verify_dir=config.pool_dir() / "verify",
            max_output_bytes=config.merge_queue.max_output_bytes,
            flaky_reruns=config.target.verification.flaky_reruns,
            include=config.worktree.include,
        )
        for note in queue.reconcile():
            self.store.append_event("log", mission_id=mission_id, level="info", message=note)
        llm = LlmCaller(self.store, backend, config, mission_id=mission_id, workdir=repo.path)
        rt = Runtime(
            config=config, store=self.store, repo=repo, pool=pool, queue=queue, backend=backend,
            llm=llm, mission_id=mission_id, objective=self.objective,
            auto_approve=self.auto_approve,
            free_slots=set(range(workers + config.green_branch.fixup_candidates)),
        )
        self.rt = rt
        return rt

    # ------------------------------------------------------------------ main loop
    async def run(self) -> MissionOutcome:
        """Run the mission to an end; returns the outcome (``exit_code`` for the host)."""
        rt = self.prepare()
        beat = _Heartbeat(self.store, rt.mission_id, self.started)
        beat.start()
        try:
            async with self.plugins.observing(self.store, rt.mission_id):
                return await self._run(rt)
        finally:
            beat.stop()
            self.lock.release()

    async def _run(self, rt: Runtime) -> MissionOutcome:
        rt.log(f"mission #{rt.mission_id}: {self.objective}")
        self.aux = await rt.pool.acquire("mc/aux", rt.repo.green_head())
        rt.llm.workdir = self.aux.path
        exit_code = 1
        try:
            stop = await self._baseline(rt)
            status, reason = stop or await self._epochs(rt)
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
                await rt.pool.release(self.aux)
            raise
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                self._finish(MissionStatus.FAILED, f"engine error: {exc!r}")
            raise
        with anyio.CancelScope(shield=True):
            await rt.pool.release(self.aux)
            self._finish(status, reason)
        next_objective = None
        if self.chain and status == MissionStatus.COMPLETED:
            next_objective = await self._strategize(rt, status, reason)
        return MissionOutcome(
            mission_id=rt.mission_id, status=status, reason=reason,
            exit_code=exit_code, next_objective=next_objective,
        )

    async def _baseline(self, rt: Runtime) -> tuple[MissionStatus, str] | None:
        """Verify mc/green once before the first epoch (``MergeQueue.verify_baseline``): what
        fails there is reported once and never blamed on a unit; with ``baseline =
        "must_pass"`` a red baseline stops the mission here, before any agent runs."""
        if self.store.query(
            "SELECT 1 FROM events WHERE mission_id = ? AND kind = 'baseline.recorded'",
            (rt.mission_id,),
        ):
            return None  # resumed: done already (a run cut short by a kill is done again)
        baseline = await rt.queue.verify_baseline()
        stop = policy_stop(baseline, self.config.target.verification.baseline)
        if stop is not None:
            return MissionStatus.FAILED, stop
        if baseline.red:
            rt.log(f"the verification does not pass on mc/green before any change: "
                   f"{baseline.describe()}. Changes are judged against it: only what they make "
                   f"worse is blamed, and it starts no fixup:\n{baseline.output_tail}",
                   level="warning")
        return None

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

    def _restore_feedback(self, mission_id: int) -> None:
        """On resume: rebuild the EMA, the stall evaluator and the objective-check count."""
        for row in self.store.query(
            "SELECT kind, payload FROM events WHERE mission_id = ? AND kind IN "
            "('epoch.feedback', 'objective.checked') ORDER BY id", (mission_id,),
        ):
            payload = json.loads(row["payload"])
            if row["kind"] == "objective.checked":
                self.objective_checks += 1
                if not payload.get("met"):
                    self._objective_feedback = payload.get("feedback")
            else:
                self.ema.observe(float(payload.get("cost") or 0.0))
                self.evaluator.record(units_merged=int(payload.get("merged") or 0),
                                      tests_passed=payload.get("tests_passed"),
                                      tests_failed=payload.get("tests_failed"),
                                      lint_errors=payload.get("lint_errors"))

    async def _epochs(self, rt: Runtime) -> tuple[MissionStatus, str]:
        config = self.config
        epoch_number = self._current_epoch_number(rt)
        resume_epoch = self._open_epoch(rt)
        if resume_epoch is None:
            decided = await self._undecided_epoch_decision(rt)
            if decided is not None:
                return decided
        while True:
            stop = self._stop_before_epoch(rt, epoch_number - (1 if resume_epoch else 0))
            if stop:
                return stop
            if resume_epoch is None:
                await self._cooldown(rt)
            if resume_epoch is not None:
                epoch_id = resume_epoch
                resume_epoch = None
            else:
                epoch_number += 1
                epoch_id = self.store.insert(
                    "epochs",
                    {"mission_id": rt.mission_id, "number": epoch_number,
                     "status": EpochStatus.PLANNING.value, "started_at": time.time()},
                    event="epoch.created",
                )
                await rt.pool.release(self.aux)
                self.aux = await rt.pool.acquire("mc/aux", rt.repo.green_head())
                rt.llm.workdir = self.aux.path
                view = EpochView(rt, int(epoch_id), epoch_number)
                planned = await self.plugins.around_phase(
                    "plan", view, partial(self._plan, rt, view.epoch_id, view.number))
                if not planned:
                    self.store.set_status("epochs", epoch_id, EpochStatus.FAILED, ended_at=time.time())
                    self.evaluator.record(units_merged=0)  # nothing measured
                    if self.evaluator.stalled(config.rounds.stall_threshold):
                        return MissionStatus.STALLED, "planning kept failing"
                    continue
            if (self.store.get("epochs", epoch_id) or {}).get("status") != EpochStatus.RUNNING:
                self.store.set_status("epochs", epoch_id, EpochStatus.RUNNING)
            spent_before = self.store.mission_cost(rt.mission_id)
            view = EpochView(rt, int(epoch_id), self._epoch_number(epoch_id))
            result = await self.plugins.around_phase(
                "execute", view, partial(self._execute_epoch, rt, view.epoch_id))
            view.result = result
            await self.plugins.around_phase(
                "publish", view, partial(self.plugins.epoch_executed, view))
            result.cost = self.store.mission_cost(rt.mission_id) - spent_before
            await self.plugins.around_phase(
                "feedback", view, partial(self._record_epoch, rt, view.epoch_id, result))
            await self.plugins.after_epoch(view)
            if result.stop:
                return result.stop
            met = await self.plugins.around_phase(
                "objective", view, partial(self._objective_met, rt, result))
            if met is not None:
                return met
            stalled = self._stall_stop()
            if stalled is not None:
                return stalled

    async def _undecided_epoch_decision(self, rt: Runtime) -> tuple[MissionStatus, str] | None:
        """On resume: the last epoch finished but the run died before its objective decision.

        Decide it now (or take the decision the killed run recorded) instead of planning a new
        epoch over work that may already meet the objective.
        """
        last = self._last_epoch(rt)
        if last is None or last["status"] != EpochStatus.COMPLETED:
            return None
        epoch_id = int(last["id"])
        ended = self.store.query(
            "SELECT MAX(id) AS id FROM events WHERE mission_id = ? AND kind = 'epoch.status' "
            "AND json_extract(payload, '$.id') = ? AND json_extract(payload, '$.to') = ?",
            (rt.mission_id, epoch_id, EpochStatus.COMPLETED.value),
        )[0]["id"]
        if ended is None:
            return None
        checked = self.store.query(
            "SELECT payload FROM events WHERE mission_id = ? AND kind = 'objective.checked' "
            "AND id > ? ORDER BY id DESC LIMIT 1", (rt.mission_id, ended),
        )
        if checked:
            payload = json.loads(checked[0]["payload"])
            if payload.get("met"):
                return MissionStatus.COMPLETED, f"objective met: {payload.get('feedback', '')}"
        else:
            merged, failed = leaf_tally(self._epoch_units(rt, epoch_id))
            result = EpochResult(merged=merged, failed=failed)
            rt.log(f"resumed after epoch {last['number']} ended: checking the objective "
                   "before planning")
            met = await self._objective_met(rt, result)
            if met is not None:
                return met
        return self._stall_stop()  # not met yet: the check the killed run would have made next

    def _stall_stop(self) -> tuple[MissionStatus, str] | None:
        threshold = self.config.rounds.stall_threshold
        if self.evaluator.stalled(threshold):
            return MissionStatus.STALLED, f"no progress for {threshold} epoch(s)"
        return None

    def _last_epoch(self, rt: Runtime) -> dict[str, Any] | None:
        rows = self.store.query(
            "SELECT id, number, status FROM epochs WHERE mission_id = ? ORDER BY number DESC LIMIT 1",
            (rt.mission_id,),
        )
        return rows[0] if rows else None

    def _epoch_number(self, epoch_id: int) -> int:
        return int((self.store.get("epochs", epoch_id) or {}).get("number") or 0)

    def _current_epoch_number(self, rt: Runtime) -> int:
        row = self.store.query(
            "SELECT MAX(number) AS n FROM epochs WHERE mission_id = ?", (rt.mission_id,)
        )
        return int(row[0]["n"] or 0)

    def _open_epoch(self, rt: Runtime) -> int | None:
        """On resume: an epoch that was running (its units exist) continues instead of replanning."""
        last = self._last_epoch(rt)
        if last and last["status"] in (EpochStatus.RUNNING, EpochStatus.INTERRUPTED):
            return int(last["id"])
        if last and last["status"] == EpochStatus.PLANNING:
            self.store.set_status("epochs", last["id"], EpochStatus.FAILED, ended_at=time.time())
        return None

    # ------------------------------------------------------------------ stop conditions
    def _stop_before_epoch(self, rt: Runtime, epochs_done: int) -> tuple[MissionStatus, str] | None:
        config = self.config
        if self.stop.requested:
            return self.stop.status, self.stop.reason
        if epochs_done >= config.rounds.max_rounds:
            return MissionStatus.STOPPED, f"max_rounds ({config.rounds.max_rounds}) reached"
        elapsed = time.monotonic() - self.started
        if elapsed >= config.continuous.max_wall_time_seconds:
            return MissionStatus.STOPPED, (
                f"wall time limit ({config.continuous.max_wall_time_seconds:.0f}s) reached"
            )
        spent = self.store.mission_cost(rt.mission_id)
        budget = config.scheduler.budget.max_per_run_usd
        projected = self.ema.projected_next()
        self.store.append_event(
            "budget.projection", mission_id=rt.mission_id, spent=spent,
            projected_next=projected, budget=budget, ema=self.ema.ema,
        )
        if spent >= budget:
            return MissionStatus.STOPPED, f"budget spent (${spent:.2f} of ${budget:.2f})"
        if self.ema.samples and self.ema.would_exceed(spent, budget):
            return MissionStatus.STOPPED, (
                f"budget: the next epoch is projected at ${projected:.2f}, "
                f"spent ${spent:.2f} of ${budget:.2f}"
            )
        return None

    async def _cooldown(self, rt: Runtime) -> None:
        seconds = cooldown_seconds(
            self.store.mission_cost(rt.mission_id), self.config.scheduler.budget.max_per_run_usd,
            time.monotonic() - self.started, self.config.continuous.max_wall_time_seconds,
            slack=COOLDOWN_SLACK,
        )
        if seconds > 0:
            rt.log(f"spend is ahead of the time budget: cooling down {seconds:.0f}s")
            with anyio.move_on_after(seconds):
                while not self.stop.requested:
                    self._handle_commands(rt)
                    await anyio.sleep(0.2)

    # ------------------------------------------------------------------ planning
    def _planning_context(self, rt: Runtime, epoch_number: int, ambition_feedback: str | None) -> PlanningContext:
        units = self.store.units(rt.mission_id)
        merged = [u["title"] for u in units if u["status"] == UnitStatus.MERGED and u["is_leaf"]]
        failed = [
            (u["title"], u["reason"] or "")
            for u in units if u["status"] in (UnitStatus.FAILED, UnitStatus.BLOCKED) and u["is_leaf"]
        ]
        feedback = [
            f"{u['title']}: {u['review_feedback']}" for u in units
            if u["review_feedback"] and u["status"] != UnitStatus.MERGED
        ]
        if self._objective_feedback:
            feedback.append(f"objective check: {self._objective_feedback}")
        spent = self.store.mission_cost(rt.mission_id)
        return PlanningContext(
            objective=self.objective, epoch=epoch_number, merged=merged, failed=failed,
            review_feedback=feedback,
            remaining_budget_usd=self.config.scheduler.budget.max_per_run_usd - spent,
            ambition_feedback=ambition_feedback,
            memory=self.plugins.planning_notes(rt),
            repo_files=list_files(rt.repo, rt.repo.green_head())[:300],
        )

    async def _plan(self, rt: Runtime, epoch_id: int, epoch_number: int) -> bool:
        config = self.config
        planner = RecursivePlanner(
            rt.llm.ask, max_depth=config.planner.max_depth,
            max_children=config.planner.max_children_per_node,
        )
        best: tuple[float, PlanTree] | None = None
        feedback: str | None = None
        for attempt in range(config.continuous.max_replan_attempts + 1):
            ctx = self._planning_context(rt, epoch_number, feedback)
            try:
                tree = await planner.plan(ctx)
            except PlanningFailed as exc:
                rt.log(f"planning failed: {exc}", level="error")
                return False
            verdict = await ambition_gate(
                rt.llm.ask, tree, self.objective, min_score=config.continuous.min_ambition_score
            )
            self.store.append_event(
                "plan.scored", mission_id=rt.mission_id, epoch=epoch_number, attempt=attempt + 1,
                score=verdict.score, llm_score=verdict.llm_score,
                heuristic_score=verdict.heuristic_score, accepted=verdict.accepted,
                feedback=verdict.feedback, units=len(tree.leaves()),
            )
            if best is None or verdict.score > best[0]:
                best = (verdict.score, tree)
            if verdict.accepted:
                break
            feedback = verdict.feedback
            rt.log(f"plan rejected by the ambition gate ({verdict.score:.1f}): replanning")
        else:
            rt.log("replan attempts used up: going ahead with the best plan", level="warning")
        assert best is not None
        tree = best[1]
        if not await approve_or_deny(
            rt, "plan", f"plan for epoch {epoch_number}: {len(tree.leaves())} units",
            diffstat=f"ambition score {best[0]:.1f}", diff=tree.outline(),
        ):
            rt.log(f"the plan for epoch {epoch_number} was not approved", level="warning")
            return False
        self.store.update("epochs", epoch_id, plan_score=best[0])
        self._insert_plan(rt, epoch_id, epoch_number, tree)
        return True

    def _insert_plan(self, rt: Runtime, epoch_id: int, epoch_number: int, tree: PlanTree) -> None:
        prefix = f"m{rt.mission_id}-e{epoch_number}-"
        now = time.time()
        with self.store.transaction():
            for unit in tree.units:
                node = unit.node
                self.store.insert(
                    "units",
                    {
                        "id": prefix + unit.key,
                        "mission_id": rt.mission_id,
                        "epoch_id": epoch_id,
                        "parent_id": prefix + unit.parent_key if unit.parent_key else None,
                        "title": node.title,
                        "description": node.description,
                        "files_hint": node.files_hint,
                        "acceptance_criteria": node.acceptance_criteria,
                        "dependencies": [prefix + d for d in unit.dependencies],
                        "specialist": node.specialist,
                        "priority": node.priority,
                        "is_leaf": int(unit.is_leaf),
                        "status": UnitStatus.PLANNED.value,
                        "created_at": now,
                        "updated_at": now,
                    },
                    event="unit.created",
                )
            # In the same transaction: a crash can never leave a plan behind a non-running epoch.
            self.store.set_status("epochs", epoch_id, EpochStatus.RUNNING)
        rt.log(f"epoch {epoch_number}: {len(tree.leaves())} units planned")

    # ------------------------------------------------------------------ execution
    async def _execute_epoch(self, rt: Runtime, epoch_id: int) -> EpochResult:
        """Dispatch ready units, feed the merge queue, run fixups, until every leaf is final.

        On a stop (user, budget, wall time) agents are cancelled at once, but the merge queue
        drains: verified work that is already paid for still lands.
        """
        result = EpochResult()
        running: set[str] = set()
        fixing: set[str] = set()
        agent_scopes: dict[str, anyio.CancelScope] = {}
        workers = self.config.scheduler.parallel.num_workers
        queue_busy = False
        errors: list[BaseException] = []
        wake = _Waker()

        async def unit_task(unit_id: str, slot: int) -> None:
            with anyio.CancelScope() as scope:
                agent_scopes[f"unit:{unit_id}"] = scope
                try:
                    options = self.plugins.worker_options(self.store.get("units", unit_id) or {})
                    outcome = await run_unit(rt, unit_id, slot, model=options.model,
                                             single_pass=options.single_pass)
                    self.plugins.session_ended(rt, outcome.agent_ok)
                    if outcome.retry_after:
                        self._not_before[unit_id] = time.monotonic() + outcome.retry_after
                except Exception as exc:
                    self._unit_error(rt, unit_id, exc, errors)
                finally:
                    agent_scopes.pop(f"unit:{unit_id}", None)
                    running.discard(unit_id)
                    rt.give_slot(slot)
                    wake.set()

        async def fixup_task(unit_id: str, detail: str) -> None:
            with anyio.CancelScope() as scope:
                agent_scopes[f"fixup:{unit_id}"] = scope
                try:
                    await run_fixup(rt, unit_id, detail)
                except Exception as exc:
                    self._unit_error(rt, unit_id, exc, errors)
                finally:
                    agent_scopes.pop(f"fixup:{unit_id}", None)
                    fixing.discard(unit_id)
                    wake.set()

        async def queue_task() -> None:
            nonlocal queue_busy
            try:
                outcome = await rt.queue.run_once()
                for item, _detail in [*outcome.conflicts, *outcome.failed]:
                    if item.unit_id and not self.stop.requested:
                        self._start_fixup(tg, fixup_task, fixing, item.unit_id)
            except Exception as exc:  # e.g. the verification cannot run at all
                errors.append(exc)
            finally:
                queue_busy = False
                wake.set()

        async with anyio.create_task_group() as tg:
            # Units left in FIXUP by a crash are repaired again.
            for unit in self._epoch_units(rt, epoch_id):
                if unit["status"] == UnitStatus.FIXUP:
                    self._start_fixup(tg, fixup_task, fixing, unit["id"])
            while True:
                self._tick(rt)
                if errors:
                    tg.cancel_scope.cancel()
                    break
                units = self._epoch_units(rt, epoch_id)
                if not self.stop.requested:
                    self._check_limits(rt)
                if self.stop.requested:
                    for scope in list(agent_scopes.values()):
                        scope.cancel()
                    if not queue_busy and rt.queue.pending() == 0:
                        result.stop = (self.stop.status, self.stop.reason)
                        tg.cancel_scope.cancel()
                        break
                else:
                    self._update_readiness(units)
                    if not self.paused:
                        self._dispatch(rt, tg, unit_task, units, running, workers)
                if not queue_busy and rt.queue.pending() > 0:
                    queue_busy = True
                    tg.start_soon(queue_task)
                leaves = [u for u in units if u["is_leaf"]]
                done = all(u["status"] in TERMINAL_UNIT_STATUSES for u in leaves)
                if done and not running and not fixing and not queue_busy and rt.queue.pending() == 0:
                    break
                await wake.wait(TICK_SECONDS * 4)
        if errors:
            raise errors[0]

        units = self._epoch_units(rt, epoch_id)
        self._roll_up_parents(units)
        result.merged, result.failed = leaf_tally(units)
        last = self.store.query(
            "SELECT output FROM verifications WHERE mission_id = ? AND (status = 'passed' OR "
            "accepted = 1) ORDER BY id DESC LIMIT 1", (rt.mission_id,),
        )
        if last:
            result.tests_passed, result.tests_failed = parse_test_counts(last[0]["output"])
            result.lint_errors = count_lint_errors(last[0]["output"])
        return result

    def _check_limits(self, rt: Runtime) -> None:
        """Budget or wall time used up mid-epoch: stop (agents now, the queue drains)."""
        spent = self.store.mission_cost(rt.mission_id)
        if spent >= self.config.scheduler.budget.max_per_run_usd:
            self.request_stop(f"budget spent (${spent:.2f})")
        elif time.monotonic() - self.started >= self.config.continuous.max_wall_time_seconds:
            self.request_stop("wall time limit reached")

    def _dispatch(
        self, rt: Runtime, tg: Any, unit_task: Any, units: list[dict[str, Any]],
        running: set[str], workers: int,
    ) -> None:
        limit = self._dispatch_limit(workers)
        now = time.monotonic()
        for unit in self._ready(units):
            if len(running) >= limit:
                break
            if unit["id"] in running or self._not_before.get(unit["id"], 0) > now:
                continue
            slot = min((s for s in rt.free_slots if s < workers), default=None)
            if slot is None:
                break
            rt.free_slots.discard(slot)
            running.add(unit["id"])
            tg.start_soon(unit_task, unit["id"], slot)

    def _unit_error(
        self, rt: Runtime, unit_id: str, exc: Exception, errors: list[BaseException]
    ) -> None:
        """One unit's trouble fails that unit; only auth / usage-limit problems stop the mission."""
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
            self.store.set_status("units", unit_id, UnitStatus.FAILED, reason=reason[:2000])
        except IllegalTransition:
            pass  # already terminal (e.g. merged by the queue meanwhile)
        self.plugins.session_ended(rt, False)

    def _start_fixup(self, tg: Any, fixup_task: Any, fixing: set[str], unit_id: str) -> None:
        if unit_id in fixing:
            return
        unit = self.store.get("units", unit_id)
        if unit is None or unit["status"] != UnitStatus.FIXUP:
            return
        fixing.add(unit_id)
        tg.start_soon(fixup_task, unit_id, unit["reason"] or "verification failed")

    def _epoch_units(self, rt: Runtime, epoch_id: int) -> list[dict[str, Any]]:
        return self.store.rows("units", "epoch_id = ?", (epoch_id,), order="created_at, id")

    def _update_readiness(self, units: list[dict[str, Any]]) -> None:
        """PLANNED leaves become READY when their dependencies are merged, BLOCKED if one failed."""
        by_id = {u["id"]: u for u in units}
        for unit in units:
            if not unit["is_leaf"] or unit["status"] != UnitStatus.PLANNED:
                continue
            # The planner already resolves a leaf's dependencies to leaves (inherited ones
            # included); an inner node id is expanded to its leaves all the same.
            leaf_deps: set[str] = set()
            for dep in unit["dependencies"]:
                leaf_deps.update(self._leaves_under(dep, units))
            states = [by_id[d]["status"] for d in leaf_deps if d in by_id]
            if any(s in (UnitStatus.FAILED, UnitStatus.BLOCKED, UnitStatus.CANCELLED) for s in states):
                self.store.set_status("units", unit["id"], UnitStatus.BLOCKED,
                                      reason="a dependency failed")
                unit["status"] = UnitStatus.BLOCKED
            elif all(s == UnitStatus.MERGED for s in states):
                self.store.set_status("units", unit["id"], UnitStatus.READY)
                unit["status"] = UnitStatus.READY

    @staticmethod
    def _leaves_under(unit_id: str, units: list[dict[str, Any]]) -> set[str]:
        children: dict[str, list[dict[str, Any]]] = {}
        for u in units:
            if u["parent_id"]:
                children.setdefault(u["parent_id"], []).append(u)
        out: set[str] = set()
        stack = [unit_id]
        while stack:
            current = stack.pop()
            kids = children.get(current)
            if kids:
                stack.extend(k["id"] for k in kids)
            else:
                out.add(current)
        return out

    def _ready(self, units: list[dict[str, Any]]) -> list[dict[str, Any]]:
        ready = [u for u in units if u["is_leaf"] and u["status"] == UnitStatus.READY]
        return self.plugins.order_ready(sorted(ready, key=lambda u: (u["priority"], u["created_at"])))

    def _roll_up_parents(self, units: list[dict[str, Any]]) -> None:
        """Inner plan nodes take a terminal status from their leaves."""
        for unit in units:
            if unit["is_leaf"] or unit["status"] in TERMINAL_UNIT_STATUSES:
                continue
            leaves = self._leaves_under(unit["id"], units)
            states = {u["status"] for u in units if u["id"] in leaves}
            final = UnitStatus.MERGED if states == {UnitStatus.MERGED} else UnitStatus.FAILED
            self.store.set_status("units", unit["id"], final,
                                  reason=None if final == UnitStatus.MERGED else "not all parts merged")

    # ------------------------------------------------------------------ degradation
    @property
    def breaker(self) -> CircuitBreaker | None:
        """The circuit breaker of the built-in ``circuit_breaker`` plugin (None: off)."""
        plugin = self.plugins.get("circuit_breaker")
        return getattr(plugin, "breaker", None)

    def _dispatch_limit(self, workers: int) -> int:
        return self.plugins.dispatch_limit(workers)

    def _single_pass(self) -> bool:
        return self.plugins.worker_options({}).single_pass

    # ------------------------------------------------------------------ commands
    def _tick(self, rt: Runtime) -> None:
        self._handle_commands(rt)

    def _handle_commands(self, rt: Runtime) -> None:
        for command in self.store.take_commands(rt.mission_id):
            kind = command["kind"]
            if kind == CommandKind.PAUSE and not self.paused:
                self.paused = True
                self.store.set_status("missions", rt.mission_id, MissionStatus.PAUSED, reason="paused")
            elif kind == CommandKind.RESUME and self.paused:
                self.paused = False
                self.store.set_status("missions", rt.mission_id, MissionStatus.RUNNING, reason="resumed")
            elif kind == CommandKind.STOP:
                self.request_stop("stopped by the user")

    def request_stop(self, reason: str, status: MissionStatus = MissionStatus.STOPPED) -> None:
        self.stop = _Stop(True, reason, status)

    # ------------------------------------------------------------------ feedback and objective
    async def _record_epoch(self, rt: Runtime, epoch_id: int, result: EpochResult) -> None:
        self._feedback(rt, epoch_id, result)
        self.store.set_status(
            "epochs", epoch_id,
            EpochStatus.COMPLETED if result.stop is None else EpochStatus.INTERRUPTED,
            ended_at=time.time(), summary=f"{result.merged} merged, {result.failed} failed",
        )

    def _feedback(self, rt: Runtime, epoch_id: int, result: EpochResult) -> None:
        self.ema.observe(result.cost)
        self.evaluator.record(
            units_merged=result.merged, tests_passed=result.tests_passed,
            tests_failed=result.tests_failed, lint_errors=result.lint_errors,
        )
        self.store.append_event(
            "epoch.feedback", mission_id=rt.mission_id, epoch_id=epoch_id, merged=result.merged,
            failed=result.failed, cost=result.cost, tests_passed=result.tests_passed,
            tests_failed=result.tests_failed, lint_errors=result.lint_errors, ema=self.ema.ema,
            projected_next=self.ema.projected_next(),
        )

    async def _objective_met(self, rt: Runtime, result: EpochResult) -> tuple[MissionStatus, str] | None:
        config = self.config.continuous
        if not config.verify_objective_completion:
            if result.merged and not result.failed:
                return MissionStatus.COMPLETED, "all planned units merged"
            return None
        if result.merged == 0:  # nothing changed since the last look: no new evidence to judge
            return None
        if self.objective_checks >= config.max_objective_checks:
            return MissionStatus.STOPPED, (
                f"objective not confirmed after {config.max_objective_checks} check(s)"
            )
        self.objective_checks += 1
        merged = [
            u["title"] for u in self.store.units(rt.mission_id)
            if u["is_leaf"] and u["status"] == UnitStatus.MERGED
        ]
        start = rt.repo.ref_head(self.config.target.branch) or rt.repo.green_head()
        stat = rt.repo.diff_stat(start, rt.repo.green_head()).text
        last = self.store.query(
            "SELECT output FROM verifications WHERE mission_id = ? ORDER BY id DESC LIMIT 1",
            (rt.mission_id,),
        )
        verdict = await check_objective(
            rt.llm.ask, objective=self.objective, merged=merged, diffstat=stat,
            verification_output=(last[0]["output"] if last else "")[-4000:],
        )
        self.store.append_event(
            "objective.checked", mission_id=rt.mission_id, met=verdict.met,
            feedback=verdict.feedback, check=self.objective_checks,
        )
        if verdict.met:
            return MissionStatus.COMPLETED, f"objective met: {verdict.feedback}"
        rt.log(f"objective not met yet: {verdict.feedback}")
        self.store.append_event("log", mission_id=rt.mission_id, level="info",
                                message="continuing with the objective check's feedback")
        self._objective_feedback = verdict.feedback
        return None

    async def _strategize(self, rt: Runtime, status: MissionStatus, reason: str) -> str | None:
        units = self.store.units(rt.mission_id)
        try:
            proposal = await propose_next_objective(
                rt.llm.ask, objective=self.objective, outcome=f"{status}: {reason}",
                merged=[u["title"] for u in units if u["status"] == UnitStatus.MERGED and u["is_leaf"]],
                failed=[u["title"] for u in units if u["status"] == UnitStatus.FAILED and u["is_leaf"]],
            )
        except LlmCallFailed as exc:
            rt.log(f"strategist failed: {exc}", level="warning")
            return None
        self.store.append_event("strategy.proposed", mission_id=rt.mission_id, objective=proposal)
        return proposal


class _Heartbeat:
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


def leaf_tally(units: list[dict[str, Any]]) -> tuple[int, int]:
    """(merged, failed or blocked) leaf units: an epoch's outcome."""
    leaves = [u for u in units if u["is_leaf"]]
    merged = sum(1 for u in leaves if u["status"] == UnitStatus.MERGED)
    failed = sum(1 for u in leaves if u["status"] in (UnitStatus.FAILED, UnitStatus.BLOCKED))
    return merged, failed


def leaf_exceptions(exc: BaseException) -> list[BaseException]:
    """The real errors inside (nested) exception groups, so a failure names its cause."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in leaf_exceptions(inner)]
    return [exc]


def list_files(repo: GitRepo, commit: str, limit: int = 2000) -> list[str]:
    """Paths in the tree of ``commit`` (for the planner's view of the repository)."""
    out: list[str] = []
    stack = [("", repo.pygit[commit].peel(pygit2.Tree))]
    while stack and len(out) < limit:
        prefix, tree = stack.pop()
        for entry in tree:
            path = f"{prefix}{entry.name}"
            if entry.type_str == "tree":
                stack.append((path + "/", repo.pygit[entry.id]))
            else:
                out.append(path)
    return sorted(out)


async def run_mission(controller: Controller) -> MissionOutcome:
    """Run one mission, then chained ones while ``chain`` is set and the strategist proposes more."""
    outcome = await controller.run()
    while controller.chain and outcome.next_objective and outcome.status == MissionStatus.COMPLETED:
        controller = Controller(
            controller.config, controller.store, backend=controller.backend,
            auto_approve=controller.auto_approve, chain=True,
            objective=outcome.next_objective, parent_mission_id=outcome.mission_id,
        )
        outcome = await controller.run()
    return outcome
