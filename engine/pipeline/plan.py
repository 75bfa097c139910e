"""The plan phase: the recursive planner, the ambition gate (replanning on its feedback),
the ``plan`` approval, and the plan's units inserted with the epoch's start."""

from __future__ import annotations

import pygit2

from engine import clock
from engine.agents.worker import session_tools_on
from engine.approvals import approve_or_deny
from engine.gitops import GitRepo
from engine.models import EpochStatus, UnitStatus
from engine.pipeline.state import MissionState
from engine.planning.ambition import ambition_gate
from engine.planning.planner import PlanningContext, PlanningFailed, RecursivePlanner
from engine.planning.schema import PlanTree


class PlanPhase:
    def __init__(self, state: MissionState) -> None:
        self.state = state

    def context(self, epoch_number: int, ambition_feedback: str | None) -> PlanningContext:
        state, rt = self.state, self.state.rt
        units = rt.units.units(rt.mission_id)
        merged = [u.title for u in units if u.status == UnitStatus.MERGED and u.is_leaf]
        failed = [
            (u.title, u.reason or "")
            for u in units if u.status in (UnitStatus.FAILED, UnitStatus.BLOCKED) and u.is_leaf
        ]
        feedback = [
            f"{u.title}: {u.review_feedback}" for u in units
            if u.review_feedback and u.status != UnitStatus.MERGED
        ]
        if state.objective_feedback:
            feedback.append(f"objective check: {state.objective_feedback}")
        spent = state.store.mission_cost(rt.mission_id)
        return PlanningContext(
            objective=rt.objective, epoch=epoch_number, merged=merged, failed=failed,
            review_feedback=feedback,
            remaining_budget_usd=rt.config.scheduler.budget.max_per_run_usd - spent,
            ambition_feedback=ambition_feedback,
            memory=state.plugins.planning_notes(rt),
            repo_files=list_files(rt.repo, rt.repo.green_head())[:300],
        )

    async def run(self, epoch_id: int, epoch_number: int) -> bool:
        """Plan the epoch; False when planning failed or the plan was not approved."""
        state, rt = self.state, self.state.rt
        config = rt.config
        planner = RecursivePlanner(
            rt.llm.ask, max_depth=config.planner.max_depth,
            max_children=config.planner.max_children_per_node,
            tools=session_tools_on(config),
        )
        best: tuple[float, PlanTree] | None = None
        feedback: str | None = None
        for attempt in range(config.continuous.max_replan_attempts + 1):
            ctx = self.context(epoch_number, feedback)
            try:
                tree = await planner.plan(ctx)
            except PlanningFailed as exc:
                rt.log(f"planning failed: {exc}", level="error")
                return False
            verdict = await ambition_gate(
                rt.llm.ask, tree, rt.objective, min_score=config.continuous.min_ambition_score
            )
            state.store.append_event(
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
            diffstat=f"{len(tree.leaves())} units, ambition score {best[0]:.1f}",
            diff=tree.tree_text(),
        ):
            rt.log(f"the plan for epoch {epoch_number} was not approved", level="warning")
            return False
        state.store.update("epochs", epoch_id, plan_score=best[0])
        self.insert(epoch_id, epoch_number, tree)
        return True

    def insert(self, epoch_id: int, epoch_number: int, tree: PlanTree) -> None:
        rt, store = self.state.rt, self.state.store
        prefix = f"m{rt.mission_id}-e{epoch_number}-"
        now = clock.now()
        with store.transaction():
            for unit in tree.units:
                node = unit.node
                store.insert(
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
                        "tools": node.tools,
                        "uncertain": int(node.uncertain),
                        "status": UnitStatus.PLANNED.value,
                        "created_at": now,
                        "updated_at": now,
                    },
                    event="unit.created",
                )
            # In the same transaction: a crash can never leave a plan behind a non-running epoch.
            store.set_status("epochs", epoch_id, EpochStatus.RUNNING)
        rt.log(f"epoch {epoch_number}: {len(tree.leaves())} units planned")


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
