"""Checks of a unit's finished branch before the merge queue: the precheck (the
verification in the unit's own worktree, ``[target.verification] precheck``), when it is
worth running (:func:`queue_verifies_at_once`), and the test merge onto ``mc/green``
(:func:`conflicts_on_green`) and onto its siblings' finished work
(:func:`conflicts_with_siblings`), and what a change must never do
(:func:`forbidden_change`). A branch that fails one goes to fixup (or back to its agent)
without entering the queue; none of them is the gate (the queue verifies every candidate)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pygit2

from engine.gitops import GitError, VerificationResult, run_verification
from engine.gitops.includes import included_files
from engine.ledger import Unit
from engine.models import MergeStatus, UnitStatus, VerificationStatus
from engine.runtime import Recheck, Runtime
from engine.stacking import merge_onto, prechecked, sibling_heads, stack_merged, unverified


async def precheck(rt: Runtime, workdir: Path, base: str, *,
                   on_rejected: Callable[[VerificationResult], object] | None = None,
                   ) -> VerificationResult:
    """The verification command in the unit's own worktree, once its agent is done
    (``[target.verification] precheck``), re-run like the queue's (``flaky_reruns``) when it is
    rejected. Its result is judged against the baseline of ``base``, the ``mc/green`` the unit
    started from, so a failure already there is not blamed.

    ``on_rejected`` is called with the first rejected run, once, before the re-runs (the
    unit's fixup round may start on it: :func:`repair_during_rerun`); the caller resolves
    the :class:`~engine.runtime.Recheck` that returns with the last run."""
    cfg = rt.config.target.verification
    result = await run_verification(cfg.command, workdir, cfg.timeout,
                                    rt.config.merge_queue.max_output_bytes)
    await rt.baseline_recorded()  # judged against it (it may still run beside the first agents)
    for rerun in range(cfg.flaky_reruns):
        if result.status == VerificationStatus.ERROR or rt.queue.judge(base, result).accepted:
            break
        if rerun == 0 and on_rejected is not None:
            on_rejected(result)
        result = await run_verification(cfg.command, workdir, cfg.timeout,
                                        rt.config.merge_queue.max_output_bytes)
    return result


def repair_during_rerun(rt: Runtime, unit_id: str, branch: str, base: str, head: str,
                        first: VerificationResult) -> Recheck | None:
    """Send a unit whose precheck was rejected to fixup now, while the re-run
    (``flaky_reruns``) still runs: the re-run is for a flaky test, and a repair waiting for it
    waited one verification on every real failure's path (1.5 s a culprit in the fleet
    benchmark, on its critical chain). If the re-run passes, the round is called off and the
    unit's own work goes to the queue (``engine/fixup.py``). Only when nothing else would
    decide first: no gate before the queue (review, large merge, forbidden change: the
    caller checks), and no unverified work under the unit's stack (its failure may be that
    work's: the precheck is then inconclusive). Returns the :class:`Recheck` the round
    waits on, or None (the re-run decides, as before)."""
    if unverified(rt, rt.units.require(unit_id)):
        return None
    recheck = rt.rechecks[unit_id] = Recheck(head)  # before the move the round starts on
    try:
        precheck_passed(rt, unit_id, branch, base, head, first, rerun_pending=True)
    except BaseException:
        rt.rechecks.pop(unit_id, None)  # no round may wait on a verdict nobody will give
        raise
    return recheck


async def conflicts_on_green(rt: Runtime, title: str, head: str,
                             stacked_on: dict[str, Any] | None) -> list[str]:
    """The paths where a unit's finished branch (``head``) conflicts with the current
    ``mc/green`` (an in-memory 3-way merge, as the queue's: ``engine/gitops/candidate.py``),
    or []. A conflict with ``mc/green`` is one in every candidate the queue could build
    later (they all contain it), so the unit goes to fixup at once instead of after a wait
    in the queue (2.5-3.4 s a conflict in the fleet benchmark, on the mission's last units).
    Checked just before a branch is submitted (after the review gate: a fixup's winner
    passes the fixup gate, not the review, so the unit's own work is reviewed first, as when
    the queue finds the conflict), and with a precheck and no review gate also before the
    precheck, which it then spares. Not checked while a head it is stacked on is unmerged:
    the queue merges those first, and a conflict there is theirs as much as its own."""
    green = rt.repo.green_head()
    if not stack_merged(rt, stacked_on, green):
        return []
    if rt.repo.contains(green, head) or rt.repo.contains(head, green):
        return []  # merged already, or built on this very mc/green: nothing can conflict
    try:
        _, paths = await anyio.to_thread.run_sync(merge_onto, rt.repo.path, green,
                                                  [(title, head)])
    except (GitError, pygit2.GitError, KeyError, ValueError) as exc:
        rt.log(f"could not test-merge {title!r} onto mc/green: {exc}; left to the queue",
               level="warning")
        return []
    return paths


def conflicted(rt: Runtime, unit_id: str, branch: str, head: str, paths: list[str]) -> None:
    """A finished branch conflicts with ``mc/green`` (:func:`conflicts_on_green`): to FIXUP."""
    rt.units.move(unit_id, UnitStatus.FIXUP, head_commit=head, branch=branch,
                  reason=f"conflict in {', '.join(paths)} with mc/green (found when its "
                  "agent was done, before the queue)")
    rt.log(f"unit {unit_id}: its branch conflicts with mc/green in {', '.join(paths)}; to "
           "fixup without entering the queue", unit_id=unit_id)


async def conflicts_with_siblings(rt: Runtime, unit_id: str, head: str,
                                  ) -> tuple[dict[str, str], list[str]]:
    """The plan-tree siblings whose finished, unmerged work (:func:`sibling_heads`: in its
    precheck, review or the queue) a unit's finished branch (``head``) conflicts with, by id
    with their heads, and the conflicting paths; ({}, []) when none does, or when
    ``[scheduler] stack_on_siblings`` is off. The second of two such branches to reach the
    queue conflicts there once the first merges; found when its agent is done, the unit's
    repair starts on the sibling's work (:func:`conflicted_with_siblings`) instead of after a
    precheck and a wait in the queue (Sub 1.1's pair in the fleet benchmark: 2.4 s on the
    critical chain; docs/gitops.md "A conflict with a sibling's work"). Only siblings the
    unit could stack on with the rest of its stack (in memory, as the queue's candidates), and
    only those whose own change shares a path with the unit's (:func:`own_paths`; merging
    every sibling cost 15-40 ms a unit in ``bench_engine_overhead``)."""
    sched = rt.config.scheduler
    if not (sched.stacked_branches and sched.stack_on_siblings):
        return {}, []
    unit = rt.units.require(unit_id)
    green = rt.repo.green_head()
    stacked = (unit.stacked_on or {}).get("heads") or {}
    others = {sib: sib_head for sib, sib_head
              in sibling_heads(rt, unit, rt.units.units(rt.mission_id), green).items()
              if sib not in stacked}
    if others:  # only a path both changed can conflict: the rest need no merge
        mine = own_paths(rt, unit, head)
        others = {sib: sib_head for sib, sib_head in others.items()
                  if mine is None or (theirs := own_paths(rt, rt.units.get(sib), sib_head)) is None
                  or mine & theirs}
    if not others:
        return {}, []
    titles = {sib: (rt.units.get(sib) or unit).title for sib in others}
    below = [(titles.get(dep, dep), dep_head) for dep, dep_head in stacked.items()]

    def probe() -> tuple[dict[str, str], list[str]]:
        found: dict[str, str] = {}
        paths: set[str] = set()
        for sib, sib_head in others.items():
            _, clash = merge_onto(rt.repo.path, green, [(titles[sib], sib_head), (unit.title, head)])
            if clash:
                found[sib] = sib_head
                paths.update(clash)
        if found:  # the repair starts on all of it: it must merge without the unit's work
            base, _ = merge_onto(rt.repo.path, green, [*below, *((titles[s], h) for s, h in found.items())])
            if base is None:
                return {}, []
        return found, sorted(paths)

    try:
        found, paths = await anyio.to_thread.run_sync(probe)
    except (GitError, pygit2.GitError, KeyError, ValueError) as exc:
        rt.log(f"could not test-merge {unit.title!r} onto its siblings' work: {exc}; left to "
               "the queue", level="warning")
        return {}, []
    if not found:
        return {}, []
    # the siblings may have moved during the merge (one stacked on this unit's work, say)
    now = sibling_heads(rt, rt.units.require(unit_id), rt.units.units(rt.mission_id),
                        rt.repo.green_head())
    found = {sib: sib_head for sib, sib_head in found.items() if now.get(sib) == sib_head}
    return (found, paths) if found else ({}, [])


def own_paths(rt: Runtime, unit: Unit | None, head: str) -> set[str] | None:
    """The paths ``unit``'s own change touches: from the commit it started on (``mc/green``
    or its stack base) to ``head`` (a tree diff); None when that is not known."""
    if unit is None or not unit.base_commit:
        return None
    try:
        return set(rt.repo.changed_paths(str(unit.base_commit), head))
    except (GitError, pygit2.GitError, KeyError, ValueError):
        return None


def conflicted_with_siblings(rt: Runtime, unit_id: str, branch: str, head: str,
                             siblings: dict[str, str], paths: list[str]) -> None:
    """A finished branch conflicts with its siblings' finished work
    (:func:`conflicts_with_siblings`): to FIXUP, stacked on that work (``units.stacked_on``
    gains the heads, as siblings), so the round's candidates start on it
    (``engine/fixup.py``) and the winner's merge requires it (``engine/stacking.py``)."""
    unit = rt.units.require(unit_id)
    stacked = dict(unit.stacked_on or {})
    base = str(unit.base_commit)
    stacked.setdefault("green", base)
    stacked.setdefault("base", base)
    stacked["heads"] = {**(stacked.get("heads") or {}), **siblings}
    stacked["siblings"] = sorted({*(stacked.get("siblings") or ()), *siblings})
    stacked["clash"] = sorted(siblings)  # what it is repaired for (engine/fixup.py clash_gone)
    titles = ", ".join(repr((rt.units.get(s) or unit).title) for s in siblings)
    rt.units.move(unit_id, UnitStatus.FIXUP, head_commit=head, branch=branch, stacked_on=stacked,
                  reason=f"conflict in {', '.join(paths)} with the finished work of its "
                  f"sibling(s) {titles}, on its way to the queue (found when its agent was "
                  "done; its repair starts on that work)")
    rt.log(f"unit {unit_id}: its branch conflicts with the work of {titles} in "
           f"{', '.join(paths)}; to fixup on top of it without entering the queue",
           unit_id=unit_id)


def queue_verifies_at_once(rt: Runtime, stacked_on: dict[str, Any] | None) -> bool:
    """Whether a unit's precheck would only run first what the merge queue runs anyway: the
    queue would verify its branch at once (:meth:`MergeQueue.verifies_at_once`: nothing waits
    ahead of it, a verify slot is free), on ``mc/green`` alone (every head it is stacked on is
    merged), the baseline to judge it by is recorded, and no review gate comes first (a
    precheck spares the review of work that fails). Then a failure costs the same either way:
    one verification of the branch alone, blamed on it, and it goes to fixup; the precheck
    would add one verification's time to the unit's path (the fleet benchmark's last unit
    spent 1.5 s in it, then 1.5 s in the queue). Not while another unit that skipped its
    precheck is on its way to the queue (``Runtime.prechecks_skipped``: the queue would take
    both in one batch). Also for the mission's last work (:func:`last_work`), whose precheck
    protects no branch queued after it. ``[target.verification] precheck_when_queue_idle``
    turns this off."""
    cfg = rt.config
    if (cfg.target.verification.precheck_when_queue_idle or cfg.review.gate_completion
            or not rt.baseline_known or rt.prechecks_skipped):
        return False
    if not stack_merged(rt, stacked_on, rt.repo.green_head()):
        return False
    return rt.queue.verifies_at_once() or last_work(rt)


def last_work(rt: Runtime) -> bool:
    """Whether no other unit's agent runs and no leaf waits to start: the mission's last
    work, behind which only repairs can join the queue. Its precheck then protects no branch
    queued after it and only delays it: the fleet benchmark's last unit (14.3 s of agent
    time) spent 1.5 s in its precheck, then 1.6 s in the queue, when the queue was still busy
    with the units before it (docs/scaling.md, sixth pass)."""
    for unit in rt.units.units(rt.mission_id):
        if not unit.is_leaf:
            continue
        if unit.status in (UnitStatus.READY, UnitStatus.PLANNED):
            return False
        if unit.status == UnitStatus.RUNNING and not unit.head_commit:
            return False  # its agent runs
    # nor while a branch that was not prechecked waits to be taken: the queue would take
    # both in one batch (as Runtime.prechecks_skipped guards, until a branch is submitted)
    waiting = rt.store.query("SELECT unit_id, head_commit FROM merges WHERE mission_id = ? "
                             "AND status = ?", (rt.mission_id, MergeStatus.QUEUED.value))
    return all(row["unit_id"] and prechecked(rt, row["unit_id"], row["head_commit"])
               for row in waiting)


def precheck_passed(rt: Runtime, unit_id: str, branch: str, base: str, head: str | None,
                    result: VerificationResult, *, rerun_pending: bool = False) -> bool:
    """Record a precheck (``unit.prechecked``); a rejected one sends the unit straight to
    FIXUP with the output, as the queue would after a failed batch and its bisection. A
    precheck that could not run at all (``error``) holds nobody up: the queue verifies.
    ``rerun_pending``: a first rejected run whose re-run is still in flight
    (:func:`repair_during_rerun`)."""
    unsure: list[str] = []
    if result.status == VerificationStatus.ERROR:
        accepted, note = True, "could not run; left to the merge queue"
    else:
        verdict = rt.queue.judge(base, result)
        accepted, note = verdict.accepted, verdict.note
        unsure = [] if accepted else unverified(rt, rt.units.require(unit_id))
        if unsure:  # stacked on work not known to pass yet: maybe its failure, not this one's
            accepted, note = True, ("inconclusive: stacked on work not verified yet ("
                                    + ", ".join(unsure) + "); left to the merge queue")
    rt.store.append_event(
        "unit.prechecked", mission_id=rt.mission_id, unit_id=unit_id, status=result.status,
        accepted=accepted, exit_code=result.exit_code, duration_s=round(result.duration_s, 3),
        head=head, note=note or None, inconclusive=bool(unsure),
        **({"rerun_pending": True} if rerun_pending else {}),
    )
    if accepted:
        return True
    why = f" ({note})" if note else ""
    output = result.output if len(result.output) <= 4000 else "..." + result.output[-4000:]
    rt.units.move(unit_id, UnitStatus.FIXUP, head_commit=head, branch=branch,
                  reason=f"verification failed in the unit's worktree before the queue{why}:\n"
                  + output)
    rt.log(f"unit {unit_id}: its precheck failed; to fixup without entering the queue"
           + ("; its re-run runs meanwhile (a pass calls the fixup off)" if rerun_pending
              else ""), unit_id=unit_id)
    return False


def record_rerun(rt: Runtime, unit_id: str, base: str, head: str, result: VerificationResult,
                 recheck: Recheck) -> None:
    """The ``unit.prechecked`` of a re-run that ran beside the unit's fixup round
    (:func:`repair_during_rerun`), then its verdict to the round waiting on ``recheck``
    (recorded first: a restart after the verdict finds it, engine/fixup.py
    ``rerun_cut_short``)."""
    accepted = rerun_accepted(rt, base, result)
    rt.store.append_event(
        "unit.prechecked", mission_id=rt.mission_id, unit_id=unit_id, status=result.status,
        accepted=accepted, exit_code=result.exit_code, duration_s=round(result.duration_s, 3),
        head=head, rerun=True,
        note=("accepted on its re-run: the first failure was flaky" if accepted else None),
    )
    recheck.resolve(accepted)


def rerun_accepted(rt: Runtime, base: str, result: VerificationResult) -> bool:
    """Whether a precheck's re-run lets the unit go on to the queue: accepted, or it could not
    run at all (as :func:`precheck_passed` treats a run that could not run)."""
    return result.status == VerificationStatus.ERROR or rt.queue.judge(base, result).accepted


def rerun_cut_short(rt: Runtime, unit: Unit) -> bool:
    """Whether ``unit`` is in FIXUP on a precheck's first rejected run whose re-run has no
    rejected result on record (it was in flight at a ``kill -9``, or it passed and the
    process died before the unit's work reached the queue): the round that started beside
    it (:func:`fixup_beside_rerun`) was waiting for that verdict. Not once the unit's head
    went to the queue after it (a failure there is the queue's, and gets a round)."""
    if not unit.head_commit:
        return False
    rows = rt.store.query(
        "SELECT kind, payload FROM events WHERE unit_id = ? AND kind IN "
        "('unit.prechecked', 'unit.submitted') ORDER BY id", (unit.id,))
    state = None
    for row in rows:
        payload = json.loads(row["payload"])
        if row["kind"] == "unit.submitted" or payload.get("head") != unit.head_commit:
            state = None
        elif payload.get("rerun_pending"):
            state = "pending"
        elif payload.get("rerun") and state == "pending":
            state = "pending" if payload.get("accepted") else None
    return state == "pending"


def forbidden_change(rt: Runtime, base: str, head: str) -> str | None:
    """What a change from ``base`` to ``head`` must never do, phrased as feedback for the
    agent, or None: delete a submodule that ``.gitmodules`` still declares (an agent's
    ``git add -A`` without the submodule checked out), move a submodule to a commit only
    the agent's worktree has, or commit a git-ignored file mc copied in from the user's
    checkout (worktree includes: ``.env`` and the like)."""
    lost = rt.repo.removed_submodules(base, head)
    if lost:
        paths = " ".join(lost)
        return (
            f"the change deletes the submodule {', '.join(lost)} (its gitlink) while .gitmodules "
            f"still declares it; keep it: `git checkout {base[:12]} -- {paths}` (to remove a "
            "submodule on purpose, `git rm` it, which also updates .gitmodules)"
        )
    unknown = rt.repo.unknown_submodule_commits(base, head)
    if unknown:
        moved = ", ".join(f"{path} to {sha[:12]}" for path, sha in unknown)
        return (
            f"the change moves the submodule {moved}, a commit that exists only in this "
            "worktree (the user's clone of the submodule does not have it, so it cannot be "
            "verified or merged); leave the submodule at its recorded commit and make changes "
            "to the submodule's own project separately"
        )
    included = set(included_files(rt.repo.path, rt.config.worktree.include))
    leaked = sorted(included & set(rt.repo.changed_paths(base, head))) if included else []
    if leaked:
        paths = " ".join(leaked)
        return (
            f"the change commits {', '.join(leaked)}: git-ignored files copied from the user's "
            "checkout (worktree.include / .worktreeinclude, e.g. secrets) must never be "
            f"committed; take them out with `git rm --cached {paths}` and keep them ignored"
        )
    return None
