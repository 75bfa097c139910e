"""The stop policy: user stop, rounds, wall time and budget (spent, and the EMA projection
of the next epoch), before an epoch and during one; and the cooldown between epochs."""

from __future__ import annotations

import anyio

from engine.budget import cooldown_seconds
from engine.models import MissionStatus
from engine.pipeline.commands import CommandInbox
from engine.pipeline.state import MissionState, Stop

# Spend may run this far (share of the budget) ahead of the clock before epochs cool down.
COOLDOWN_SLACK = 0.1


class StopPolicy:
    def __init__(self, state: MissionState, inbox: CommandInbox) -> None:
        self.state = state
        self.inbox = inbox

    def before_epoch(self, epochs_done: int) -> Stop | None:
        state, config, rt = self.state, self.state.rt.config, self.state.rt
        if state.stop.requested:
            return state.stop.status, state.stop.reason
        if epochs_done >= config.rounds.max_rounds:
            return MissionStatus.STOPPED, f"max_rounds ({config.rounds.max_rounds}) reached"
        if state.elapsed() >= config.continuous.max_wall_time_seconds:
            return MissionStatus.STOPPED, (
                f"wall time limit ({config.continuous.max_wall_time_seconds:.0f}s) reached"
            )
        spent = state.store.mission_cost(rt.mission_id)
        budget = config.scheduler.budget.max_per_run_usd
        projected = state.ema.projected_next()
        state.store.append_event(
            "budget.projection", mission_id=rt.mission_id, spent=spent,
            projected_next=projected, budget=budget, ema=state.ema.ema,
        )
        if spent >= budget:
            return MissionStatus.STOPPED, f"budget spent (${spent:.2f} of ${budget:.2f})"
        if state.ema.samples and state.ema.would_exceed(spent, budget):
            return MissionStatus.STOPPED, (
                f"budget: the next epoch is projected at ${projected:.2f}, "
                f"spent ${spent:.2f} of ${budget:.2f}"
            )
        return None

    def check_limits(self) -> None:
        """Budget or wall time used up mid-epoch: stop (agents now, the queue drains)."""
        state, config = self.state, self.state.rt.config
        spent = state.store.mission_cost(state.rt.mission_id)
        if spent >= config.scheduler.budget.max_per_run_usd:
            state.request_stop(f"budget spent (${spent:.2f})")
        elif state.elapsed() >= config.continuous.max_wall_time_seconds:
            state.request_stop("wall time limit reached")

    async def cooldown(self) -> None:
        state, config, rt = self.state, self.state.rt.config, self.state.rt
        seconds = cooldown_seconds(
            state.store.mission_cost(rt.mission_id), config.scheduler.budget.max_per_run_usd,
            state.elapsed(), config.continuous.max_wall_time_seconds, slack=COOLDOWN_SLACK,
        )
        if seconds > 0:
            rt.log(f"spend is ahead of the time budget: cooling down {seconds:.0f}s")
            with anyio.move_on_after(seconds):
                while not state.stop.requested:
                    self.inbox.take()
                    await anyio.sleep(0.2)
