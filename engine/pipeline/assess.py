"""Judging: the baseline before the first epoch, the feedback phase (EMA, stall evaluator,
``epoch.feedback``, the epoch's end) and the objective phase (is the objective met?)."""

from __future__ import annotations

from engine.gates.objective import check_objective
from engine.gitops.baseline import policy_stop
from engine.models import EpochStatus, MissionStatus, UnitStatus
from engine.pipeline.state import EpochResult, MissionState, Stop


async def verify_baseline(state: MissionState) -> Stop | None:
    """Verify mc/green once before the first epoch (``MergeQueue.verify_baseline``): what
    fails there is reported once and never blamed on a unit; with ``baseline =
    "must_pass"`` a red baseline stops the mission here, before any agent runs."""
    rt = state.rt
    if state.store.query(
        "SELECT 1 FROM events WHERE mission_id = ? AND kind = 'baseline.recorded'",
        (rt.mission_id,),
    ):
        return None  # resumed: done already (a run cut short by a kill is done again)
    baseline = await rt.queue.verify_baseline()
    stop = policy_stop(baseline, rt.config.target.verification.baseline)
    if stop is not None:
        return MissionStatus.FAILED, stop
    if baseline.red:
        rt.log(f"the verification does not pass on mc/green before any change: "
               f"{baseline.describe()}. Changes are judged against it: only what they make "
               f"worse is blamed, and it starts no fixup:\n{baseline.output_tail}",
               level="warning")
    return None


class FeedbackPhase:
    def __init__(self, state: MissionState) -> None:
        self.state = state

    async def run(self, epoch_id: int, result: EpochResult) -> None:
        state, rt = self.state, self.state.rt
        state.ema.observe(result.cost)
        state.evaluator.record(
            units_merged=result.merged, tests_passed=result.tests_passed,
            tests_failed=result.tests_failed, lint_errors=result.lint_errors,
        )
        rt.epochs.record_feedback(  # the event, its figures and the epoch's end, together
            epoch_id, mission_id=rt.mission_id,
            status=EpochStatus.COMPLETED if result.stop is None else EpochStatus.INTERRUPTED,
            summary=f"{result.merged} merged, {result.failed} failed", merged=result.merged,
            failed=result.failed, cost=result.cost, tests_passed=result.tests_passed,
            tests_failed=result.tests_failed, lint_errors=result.lint_errors, ema=state.ema.ema,
            projected_next=state.ema.projected_next(),
        )


class ObjectivePhase:
    def __init__(self, state: MissionState) -> None:
        self.state = state

    async def run(self, epoch_id: int, result: EpochResult) -> Stop | None:
        """The mission's end when the objective is met (or cannot be confirmed), else None.
        A check is recorded on ``epoch_id``, the epoch whose result it judged."""
        state, rt = self.state, self.state.rt
        config = rt.config.continuous
        if not config.verify_objective_completion:
            if result.merged and not result.failed:
                return MissionStatus.COMPLETED, "all planned units merged"
            return None
        if result.merged == 0:  # nothing changed since the last look: no new evidence to judge
            return None
        if state.objective_checks >= config.max_objective_checks:
            return MissionStatus.STOPPED, (
                f"objective not confirmed after {config.max_objective_checks} check(s)"
            )
        state.objective_checks += 1
        merged = [u.title for u in rt.units.units(rt.mission_id)
                  if u.is_leaf and u.status == UnitStatus.MERGED]
        start = rt.repo.ref_head(rt.config.target.branch) or rt.repo.green_head()
        stat = rt.repo.diff_stat(start, rt.repo.green_head()).text
        last = state.store.query(
            "SELECT output FROM verifications WHERE mission_id = ? ORDER BY id DESC LIMIT 1",
            (rt.mission_id,),
        )
        verdict = await check_objective(
            rt.llm.ask, objective=rt.objective, merged=merged, diffstat=stat,
            verification_output=(last[0]["output"] if last else "")[-4000:],
        )
        rt.epochs.record_objective(epoch_id, mission_id=rt.mission_id, met=verdict.met,
                                   feedback=verdict.feedback, check=state.objective_checks)
        if verdict.met:
            return MissionStatus.COMPLETED, f"objective met: {verdict.feedback}"
        rt.log(f"objective not met yet: {verdict.feedback}")
        state.store.append_event("log", mission_id=rt.mission_id, level="info",
                                 message="continuing with the objective check's feedback")
        state.objective_feedback = verdict.feedback
        return None
