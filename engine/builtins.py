"""The built-in plugins: publish (push), rewards, episodic memory, the circuit breaker
(``engine/resilience/plugin.py``, re-exported here where its entry point names it).

Registered like any plugin (entry points in ``pyproject.toml``, group
``mission_control.plugins``); their settings stay in their own sections
(``[green_branch]``, ``[episodic_memory]``, ``[degradation]``) and
``[plugins.<name>] enabled = false`` switches one off.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pygit2

from engine.learning.memory import EpisodicMemoryPlugin
from engine.learning.rewards import unit_reward
from engine.models import MissionStatus, UnitStatus
from engine.plugins import EpochView, Plugin, PluginConfig
from engine.resilience.plugin import CircuitBreakerPlugin

__all__ = ["CircuitBreakerPlugin", "EpisodicMemoryPlugin", "PublishPlugin", "RewardsPlugin"]

if TYPE_CHECKING:
    from engine.config import MissionConfig
    from engine.publish import PushState
    from engine.runtime import Runtime


class PublishPlugin(Plugin):
    """``green_branch.auto_push``: after every epoch push mc/green when the remote branch
    lacks its commits (a push lost to a crash, a denial or a timeout is offered again); at
    the end, "objective met" without a push becomes "objective met, not pushed" (exit 3)."""

    name = "publish"
    builtin = True
    order = 10

    def __init__(self, config: PluginConfig, mission: MissionConfig) -> None:
        super().__init__(config, mission)
        self.state: PushState | None = None

    async def epoch_executed(self, view: EpochView) -> None:
        result = view.result
        if result is not None and result.stop is not None \
                and result.stop[0] == MissionStatus.INTERRUPTED:
            return
        if self.mission.green_branch.auto_push:
            from engine.publish import publish

            self.state = await publish(view.rt)

    async def mission_outcome(
        self, rt: Runtime, status: MissionStatus, reason: str
    ) -> tuple[MissionStatus, str]:
        if status != MissionStatus.COMPLETED or not self.mission.green_branch.auto_push:
            return status, reason
        from engine.publish import publish

        state = self.state or await publish(rt)
        if state.pushed:
            return status, reason
        rt.log(f"objective met, but mc/green is not pushed: {state.reason}", level="error")
        return MissionStatus.NOT_PUSHED, f"objective met, not pushed: {state.reason}"


class RewardsPlugin(Plugin):
    """A reward per finished leaf unit (``unit.reward`` events, ``units.reward``)."""

    name = "rewards"
    builtin = True
    order = 20

    async def epoch_executed(self, view: EpochView) -> None:
        rt = view.rt
        for unit in rt.store.rows("units", "epoch_id = ?", (view.epoch_id,), order="created_at, id"):
            if not unit["is_leaf"] or unit["reward"] is not None:
                continue
            merged = unit["status"] == UnitStatus.MERGED
            if not merged and unit["status"] not in (UnitStatus.FAILED, UnitStatus.BLOCKED):
                continue
            diff = merged_diff(rt, unit["id"]) if merged else ""
            reward = unit_reward(merged=merged, review_score=unit["review_score"], diff=diff)
            rt.store.update("units", unit["id"], reward=reward.value)
            rt.store.append_event(
                "unit.reward", mission_id=rt.mission_id, unit_id=unit["id"], reward=reward.value,
                merged=reward.merged, review_score=reward.review_score, test_delta=reward.test_delta,
            )


def merged_diff(rt: Runtime, unit_id: str) -> str:
    """What the unit brought into mc/green: its promoted merge commit vs its first parent."""
    rows = rt.store.query(
        "SELECT candidate_commit FROM merges WHERE unit_id = ? AND status = 'promoted' "
        "AND candidate_commit IS NOT NULL ORDER BY id DESC LIMIT 1", (unit_id,),
    )
    if not rows:
        return ""
    commit = rt.repo.pygit[rows[0]["candidate_commit"]].peel(pygit2.Commit)
    if not commit.parents:
        return ""
    return rt.repo.diff_text(str(commit.parents[0].id), str(commit.id))
