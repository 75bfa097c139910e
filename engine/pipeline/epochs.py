"""The epoch pipeline: each epoch runs the phases plan -> execute -> publish -> feedback ->
objective over an :class:`~engine.plugins.EpochView`, each wrapped by the plugins'
``around_phase``. A resumed mission starts at the phase :func:`resume_point` names."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Literal

from engine import clock
from engine.ledger import EpochLedger
from engine.models import EpochStatus, MissionStatus
from engine.pipeline.assess import FeedbackPhase, ObjectivePhase
from engine.pipeline.commands import CommandInbox
from engine.pipeline.execute import ExecutePhase
from engine.pipeline.plan import PlanPhase
from engine.pipeline.state import EpochResult, MissionState, Stop, leaf_tally
from engine.pipeline.stop import StopPolicy
from engine.plugins import EpochView
from engine.store import Store

Phase = Literal["plan", "execute", "objective", "decided"]


@dataclass(frozen=True)
class StartPoint:
    """Where the loop starts: ``plan`` a new epoch; ``execute`` the open epoch (its units
    exist); ``objective``: the epoch finished but its objective decision was never made;
    ``decided``: the killed run recorded that decision (``decided`` is the mission's end,
    or None: not met, go on)."""

    phase: Phase
    epoch_id: int | None = None
    decided: Stop | None = None


def resume_point(store: Store, mission_id: int) -> StartPoint:
    """The phase a (resumed) mission starts from, read from the epochs' status and decision
    columns (``engine/ledger.py``: the objective check is recorded on the epoch it judged)."""
    epochs = EpochLedger(store).epochs(mission_id)
    if not epochs:
        return StartPoint("plan")
    last = epochs[-1]
    if last.status in (EpochStatus.RUNNING, EpochStatus.INTERRUPTED):
        return StartPoint("execute", last.id)
    if last.status == EpochStatus.PLANNING:  # a plan never inserted: plan again
        store.set_status("epochs", last.id, EpochStatus.FAILED, ended_at=clock.now())
        return StartPoint("plan")
    if last.status != EpochStatus.COMPLETED:
        return StartPoint("plan")
    if last.objective_met is None:
        return StartPoint("objective", last.id)
    if last.objective_met:
        return StartPoint("decided", last.id, (
            MissionStatus.COMPLETED, f"objective met: {last.objective_feedback or ''}"))
    return StartPoint("decided", last.id)


class EpochPipeline:
    def __init__(self, state: MissionState) -> None:
        self.state = state
        self.inbox = CommandInbox(state)
        self.policy = StopPolicy(state, self.inbox)
        self.plan = PlanPhase(state)
        self.execute = ExecutePhase(state, self.inbox, self.policy)
        self.feedback = FeedbackPhase(state)
        self.objective = ObjectivePhase(state)

    async def run(self) -> Stop:
        """Run epochs until a stop; returns the mission's (status, reason)."""
        state, rt = self.state, self.state.rt
        row = state.store.query(
            "SELECT MAX(number) AS n FROM epochs WHERE mission_id = ?", (rt.mission_id,))
        number = int(row[0]["n"] or 0)
        start = resume_point(state.store, rt.mission_id)
        while True:
            if start.phase == "plan":
                stop = self.policy.before_epoch(number)
                if stop:
                    return stop
                await self.policy.cooldown()
                number += 1
                epoch_id = int(state.store.insert(
                    "epochs",
                    {"mission_id": rt.mission_id, "number": number,
                     "status": EpochStatus.PLANNING.value, "started_at": clock.now()},
                    event="epoch.created",
                ))
                await self._fresh_aux()
                view = EpochView(rt, epoch_id, number)
                planned = await state.plugins.around_phase(
                    "plan", view, partial(self.plan.run, epoch_id, number))
                if not planned:
                    state.store.set_status("epochs", epoch_id, EpochStatus.FAILED,
                                           ended_at=clock.now())
                    state.evaluator.record(units_merged=0)  # nothing measured
                    if state.evaluator.stalled(rt.config.rounds.stall_threshold):
                        return MissionStatus.STALLED, "planning kept failing"
                    continue
                start = StartPoint("execute", epoch_id)
            elif start.phase == "execute":  # the open epoch of a resumed mission
                stop = self.policy.before_epoch(number - 1)
                if stop:
                    return stop
            assert start.epoch_id is not None
            if start.phase == "execute":
                result = await self.run_epoch(start.epoch_id)
                if result.stop:
                    return result.stop
                verdict = await state.plugins.around_phase(
                    "objective", self._view(start.epoch_id, result),
                    partial(self.objective.run, start.epoch_id, result))
            elif start.phase == "objective":
                merged, failed = leaf_tally(state.epoch_units(start.epoch_id))
                rt.log(f"resumed after epoch {number} ended: checking the objective "
                       "before planning")
                verdict = await self.objective.run(start.epoch_id,
                                                   EpochResult(merged=merged, failed=failed))
            else:
                verdict = start.decided
            if verdict is not None:
                return verdict
            stalled = state.stall_stop()
            if stalled is not None:
                return stalled
            start = StartPoint("plan")

    async def run_epoch(self, epoch_id: int) -> EpochResult:
        """execute -> publish -> feedback -> after_epoch, for an epoch whose units exist."""
        state, rt = self.state, self.state.rt
        if (state.store.get("epochs", epoch_id) or {}).get("status") != EpochStatus.RUNNING:
            state.store.set_status("epochs", epoch_id, EpochStatus.RUNNING)
        spent_before = state.store.mission_cost(rt.mission_id)
        view = self._view(epoch_id, None)
        result = await state.plugins.around_phase(
            "execute", view, partial(self.execute.run, epoch_id))
        view.result = result
        await state.plugins.around_phase(
            "publish", view, partial(state.plugins.epoch_executed, view))
        result.cost = state.store.mission_cost(rt.mission_id) - spent_before
        await state.plugins.around_phase(
            "feedback", view, partial(self.feedback.run, epoch_id, result))
        await state.plugins.after_epoch(view)
        return result

    def _view(self, epoch_id: int, result: EpochResult | None) -> EpochView:
        number = int((self.state.store.get("epochs", epoch_id) or {}).get("number") or 0)
        return EpochView(self.state.rt, epoch_id, number, result)

    async def _fresh_aux(self) -> None:
        """A new epoch plans on the current mc/green: move the aux worktree there."""
        state, rt = self.state, self.state.rt
        if state.aux is not None:
            await rt.pool.release(state.aux)
        state.aux = await rt.pool.acquire("mc/aux", rt.repo.green_head())
        rt.llm.workdir = state.aux.path
