"""The built-in plugins: publish (push), rewards, episodic memory, the circuit breaker.

Registered like any plugin (entry points in ``pyproject.toml``, group
``mission_control.plugins``); their settings stay in their own sections
(``[green_branch]``, ``[episodic_memory]``, ``[degradation]``) and
``[plugins.<name>] enabled = false`` switches one off.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import pygit2

from engine.learning.rewards import unit_reward
from engine.models import MissionStatus, UnitStatus
from engine.plugins import EpochView, Plugin, PluginConfig, WorkerOptions
from engine.resilience.breaker import BreakerState, CircuitBreaker, degraded_workers, single_pass

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


class EpisodicMemoryPlugin(Plugin):
    """``[episodic_memory]``: outcomes of earlier missions on this target whose objective is
    similar enough (word overlap >= similarity_threshold), most similar first."""

    name = "episodic_memory"
    builtin = True
    order = 30

    def planning_notes(self, rt: Runtime) -> list[str]:
        memory = self.mission.episodic_memory
        if not memory.enabled:
            return []
        rows = rt.store.query(
            "SELECT objective, status, outcome FROM missions WHERE id != ? AND ended_at IS NOT NULL "
            "ORDER BY id DESC LIMIT ?",
            (rt.mission_id, memory.max_episodes),
        )
        scored = [(similarity(rt.objective, r["objective"]), r) for r in rows]
        recalled = sorted(
            (pair for pair in scored if pair[0] >= memory.similarity_threshold),
            key=lambda pair: -pair[0],
        )
        return [f"{r['objective']} -> {r['status']}: {r['outcome'] or ''}" for _, r in recalled]


def similarity(a: str, b: str) -> float:
    """Jaccard overlap of the words of two objectives (0..1)."""
    words_a = {w for w in re.findall(r"[a-z0-9]+", a.lower()) if len(w) > 2}
    words_b = {w for w in re.findall(r"[a-z0-9]+", b.lower()) if len(w) > 2}
    if not words_a or not words_b:
        return 0.0
    return len(words_a & words_b) / len(words_a | words_b)


class CircuitBreakerPlugin(Plugin):
    """``[degradation]``: after consecutive agent failures, degrade dispatch (fewer workers,
    single pass, a fallback model, or a pause) until the breaker closes again."""

    name = "circuit_breaker"
    builtin = True
    order = 40

    def __init__(self, config: PluginConfig, mission: MissionConfig) -> None:
        super().__init__(config, mission)
        d = mission.degradation
        self.breaker = CircuitBreaker(d.failure_threshold, d.reset_timeout) if d.enabled else None

    def dispatch_limit(self, workers: int) -> int:
        if self.breaker is None:
            return workers
        return degraded_workers(workers, self.mission.degradation.fallback_strategy,
                                self.breaker.state)

    def worker_options(self, unit: dict[str, Any], options: WorkerOptions) -> WorkerOptions:
        if self.breaker is None:
            return options
        d = self.mission.degradation
        state = self.breaker.state
        model = options.model
        if d.fallback_strategy == "fallback_model" and state == BreakerState.OPEN:
            model = d.fallback_model
        return replace(
            options, model=model,
            single_pass=options.single_pass or single_pass(d.fallback_strategy, state),
        )

    def session_ended(self, rt: Runtime, ok: bool) -> None:
        if self.breaker is None:
            return
        changed = self.breaker.record(ok)
        if changed is None:
            return
        strategy = self.mission.degradation.fallback_strategy
        rt.store.append_event(
            "degradation.breaker", mission_id=rt.mission_id, state=str(changed),
            strategy=strategy, failures=self.breaker.failures,
        )
        if changed == BreakerState.OPEN:
            rt.log(f"{self.breaker.failures} agent failures in a row: degrading dispatch "
                   f"({strategy}) for {self.mission.degradation.reset_timeout:.0f}s",
                   level="warning")
