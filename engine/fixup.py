"""N-of-M fixup: several agents repair a conflicting or failing unit; the best candidate wins.

Each candidate gets its own worktree at the current ``mc/green`` with the unit's
branch merged in (conflict markers committed as-is when the merge conflicts),
works with a different approach hint, and is verified in place. The winner is
chosen by :func:`engine.gates.fixup_select.choose_winner` (verified, most tests
passing, fewest lint errors, smallest diff) and goes back into the merge queue.
The merge step is ``engine/gitops/fixup_merge.py``; a round that starts beside a
precheck's re-run (:func:`fixup_beside_rerun`) is called off if the re-run passes.
"""

from __future__ import annotations

import traceback

import anyio

from engine.agents import AgentRole, run_unit_agent
from engine.approvals import approve_or_deny
from engine.checks import conflicts_on_green, forbidden_change, rerun_cut_short
from engine.dispatch import FATAL_REASONS, submit
from engine.fixup_slots import blocks_others, round_slots
from engine.gates.fixup_select import (
    FIXUP_APPROACHES,
    FixupCandidate,
    choose_winner,
    count_lint_errors,
    parse_test_counts,
)
from engine.gitops import run_verification
from engine.gitops.fixup_merge import prepare_candidate
from engine.hosts import running_on
from engine.ledger import FixupWinner, Unit
from engine.models import UnitStatus
from engine.runtime import FatalAgentError, Recheck, Runtime
from engine.stacking import (
    dead_siblings,
    drop_siblings,
    repair_base,
    stack_base,
    unverified,
    without_siblings,
)


def fixup_rounds(rt: Runtime, unit_id: str) -> int:
    """Rounds of this unit that reached a decision (``fixup.winner``, with or without one).

    A round cut short by a crash is not counted: the resumed run plays it again, so a
    ``kill -9`` never uses up one of the unit's ``fixup_max_attempts``.
    """
    return rt.units.fixup_rounds(unit_id)  # the ledger's units.fixup_rounds


async def run_fixup(rt: Runtime, unit_id: str, detail: str, *,
                    notes: list[str] | None = None) -> None:
    """Repair a unit in FIXUP status, or fail it when attempts are used up. ``notes``: the
    plugins' ``worker_notes`` (the prompt's "What earlier attempts learned")."""
    unit = rt.units.require(unit_id)
    pending = undelivered_winner(rt, unit_id)
    if pending is not None:
        rt.log(f"unit {unit_id}: delivering fixup round {pending.round}'s winner again "
               "(the process stopped before it reached the queue)", unit_id=unit_id)
        await deliver_winner(rt, unit, pending.round, pending.candidate, pending.approach,
                             pending.head)
        return
    if await clash_gone(rt, unit):
        return
    recheck = rt.rechecks.pop(unit_id, None)
    if recheck is None and rerun_cut_short(rt, unit):
        # a restart came between its precheck's first run and its re-run's end: as a crash
        # during a precheck always did, its own work goes to the queue, which verifies it
        rt.log(f"unit {unit_id}: its precheck's re-run did not end before the restart (or "
               "passed); its own work goes to the merge queue, which verifies it",
               unit_id=unit_id)
        submit(rt, unit_id, str(unit.branch), str(unit.head_commit))
        return
    round_no = fixup_rounds(rt, unit_id) + 1
    max_rounds = rt.config.green_branch.fixup_max_attempts
    if round_no > max_rounds and recheck is None:
        rt.units.move(
            unit_id, UnitStatus.FAILED,
            reason=f"fixup attempts exhausted ({max_rounds}); back to the planner: {detail[-300:]}",
        )
        return
    if recheck is not None:  # its precheck's re-run is in flight (engine/checks.py)
        await fixup_beside_rerun(rt, unit, recheck, detail, notes)
        return
    await play_round(rt, unit, round_no, detail, notes)


async def clash_gone(rt: Runtime, unit: Unit) -> bool:
    """Take out of ``unit``'s stack the siblings whose work will never merge
    (:func:`engine.stacking.dead_siblings`: failed, cancelled, redoing it); when the unit was
    in FIXUP only for a conflict with their work (``stacked_on.clash``) and its own branch
    merges onto ``mc/green``, its own work goes to the queue instead of a round (True)."""
    dead = dead_siblings(rt, unit)
    if not dead:
        return False
    clash = set((unit.stacked_on or {}).get("clash") or ())
    stacked = without_siblings(unit.stacked_on, dead)
    if (clash and not clash - set(dead) and unit.head_commit and unit.branch
            and not await conflicts_on_green(rt, unit.title, unit.head_commit, stacked)):
        current = rt.units.require(unit.id)
        if current.status == UnitStatus.FIXUP and current.head_commit == unit.head_commit:
            with rt.store.transaction():  # a restart finds both or neither
                rt.store.update("units", unit.id, stacked_on=stacked)
                submit(rt, unit.id, unit.branch, unit.head_commit)
            rt.log(f"unit {unit.id}: the sibling work it conflicted with will not merge; its "
                   "own work goes to the merge queue", unit_id=unit.id)
            return True
    drop_siblings(rt, rt.units.require(unit.id), dead, "that work will not merge")
    return False


def leaves_markers(rt: Runtime, base: str, head: str) -> bool:
    """Whether the change from ``base`` to ``head`` adds a line that is a merge conflict
    marker (``<<<<<<< `` or ``>>>>>>> ``, as git writes them): a candidate left so failed on
    its own account."""
    return any(line.startswith(("+<<<<<<< ", "+>>>>>>> "))
               for line in rt.repo.diff_text(base, head).splitlines())


async def fixup_beside_rerun(rt: Runtime, unit: Unit, recheck: Recheck, detail: str,
                             notes: list[str] | None) -> None:
    """A fixup round started while the unit's rejected precheck is re-run
    (:func:`engine.checks.repair_during_rerun`): when the re-run is accepted (the failure was
    flaky) the round is called off, its agents stopped, and the unit's own work goes to the
    queue; otherwise the round goes on as any other. A round called off is not counted
    (:func:`fixup_rounds` counts decisions)."""
    flaky = False

    async def round_then_verdict() -> None:
        round_no = fixup_rounds(rt, unit.id) + 1
        if round_no > rt.config.green_branch.fixup_max_attempts:  # no round to play: wait
            if not await recheck.verdict():
                await run_fixup(rt, unit.id, detail, notes=notes)  # fails it, as before
            return
        await play_round(rt, unit, round_no, detail, notes, decide_after=recheck)

    async with anyio.create_task_group() as tg:
        tg.start_soon(round_then_verdict)
        if await recheck.verdict():
            flaky = True
            tg.cancel_scope.cancel()
    if not flaky:
        return
    rt.log(f"unit {unit.id}: its precheck passed on the re-run (the failure was flaky); its "
           "fixup round is called off and its own work goes to the queue", unit_id=unit.id)
    rt.store.append_event("fixup.called_off", mission_id=rt.mission_id, unit_id=unit.id,
                          reason="the precheck passed on its re-run")
    current = rt.units.require(unit.id)
    if current.status == UnitStatus.FIXUP and current.head_commit == recheck.head:
        submit(rt, unit.id, str(current.branch), recheck.head)


async def play_round(rt: Runtime, unit: Unit, round_no: int, detail: str,
                     notes: list[str] | None, *, decide_after: Recheck | None = None) -> None:
    """Fixup round ``round_no`` of ``unit``: its candidates, then the decision (a winner to
    the queue, another round, or FAILED). ``decide_after``: the decision waits for that
    re-run's verdict (a flaky one calls the round off: :func:`fixup_beside_rerun`)."""
    store = rt.store
    unit_id = unit.id
    max_rounds = rt.config.green_branch.fixup_max_attempts
    slots = await round_slots(rt, blocks_others(rt, unit_id))
    n = len(slots)
    try:  # until the candidates own them (each gives its slot back), the round does
        green = rt.repo.green_head()
        base, unit = await repair_base(rt, unit, green)  # on the work its merge waits for
        store.append_event(
            "fixup.started", mission_id=rt.mission_id, unit_id=unit_id, round=round_no,
            candidates=n, detail=detail[-2000:],
        )
    except BaseException:
        for slot in slots:
            rt.give_slot(slot)
        raise
    results: list[FixupCandidate | None] = [None] * n
    fatal: list[str] = []

    async def candidate(index: int, slot: int) -> None:
        """One candidate; its own trouble (git, verification) loses it, not the round."""
        approach = FIXUP_APPROACHES[index % len(FIXUP_APPROACHES)]
        try:
            await play_candidate(index, approach, slot)
        except FatalAgentError:
            raise
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            rt.log(f"fixup candidate {index + 1} of {unit.title} failed: {reason}",
                   level="error", unit_id=unit_id,
                   traceback="".join(traceback.format_exception(exc))[-6000:])
            store.append_event(
                "fixup.candidate", mission_id=rt.mission_id, unit_id=unit_id, round=round_no,
                candidate=index + 1, approach=approach, verified=False, error=reason[:1000],
                agent_status="error",
            )

    async def play_candidate(index: int, approach: str, slot: int) -> None:
        branch = f"mc/fixup/{unit_id}/{round_no}-{index + 1}"
        holds = [slot]  # the agent slot, until its agent is done

        def give_back() -> None:
            while holds:
                rt.give_slot(holds.pop())

        try:
            ws = await rt.pool.acquire(branch, base)
        except BaseException:
            give_back()
            raise
        try:
            conflicts = await anyio.to_thread.run_sync(
                prepare_candidate, ws.path, unit.head_commit, unit.title
            )
            failure = detail if not conflicts else (
                f"merge conflict in: {', '.join(conflicts)} (conflict markers are committed; "
                f"resolve them)\n{detail}"
            )
            with running_on(rt.hosts.host_of(slot) if rt.hosts else None):
                outcome = await run_unit_agent(
                    store, rt.backend, config=rt.config, mission_id=rt.mission_id,
                    unit=rt.units.require(unit_id).row, objective=rt.objective,
                    workdir=ws.path, base_commit=base, slot=slot, role=AgentRole.FIXUP,
                    approach=approach, failure_output=failure[-8000:], notes=notes,
                    feedback=None,
                )
            # its slot goes to the next agent: its verification holds none (as a precheck),
            # and held one for 1.5 s of every fixup session in the fleet benchmark
            give_back()
            if outcome.failure_reason in FATAL_REASONS:
                fatal.append(FATAL_REASONS[outcome.failure_reason])
                return
            head = rt.pool.head(ws)
            async with rt.check_limiter:
                verification = await run_verification(
                    rt.config.target.verification.command, ws.path,
                    rt.config.target.verification.timeout,
                    rt.config.merge_queue.max_output_bytes,
                )
            passed, failed = parse_test_counts(verification.output)
            await rt.baseline_recorded()  # judged against it below
            stat = rt.repo.diff_stat(base, head)
            problem = forbidden_change(rt, base, head)
            if problem:  # never delivered: the same check as before a unit's review
                rt.log(f"fixup candidate {index + 1} is out: {problem}", level="warning",
                       unit_id=unit_id)
            # no worse than the baseline of the mc/green it is built on; a failure while
            # work under its stack is unverified may be that work's (as a precheck's): the
            # queue verifies it on that work's repair (its merge requires it)
            accepted = rt.queue.judge(green, verification).accepted
            unsure = ([] if accepted or problem or outcome.status != "completed"
                      or leaves_markers(rt, base, head)
                      else unverified(rt, rt.units.require(unit_id)))
            result = FixupCandidate(
                index=index, approach=approach,
                verified=(accepted or bool(unsure)) and not problem,
                tests_passed=passed, tests_failed=failed,
                lint_errors=count_lint_errors(verification.output),
                diff_lines=stat.insertions + stat.deletions,
                head_commit=head if head != base else None,
            )
            results[index] = result
            store.append_event(
                "fixup.candidate", mission_id=rt.mission_id, unit_id=unit_id, round=round_no,
                candidate=index + 1, approach=approach, branch=branch, verified=result.verified,
                tests_passed=passed, tests_failed=failed, lint_errors=result.lint_errors,
                diff_lines=result.diff_lines, agent_status=outcome.status,
                **({"inconclusive": True, "unverified": unsure} if unsure else {}),
            )
        finally:
            give_back()
            with anyio.CancelScope(shield=True):
                try:
                    await rt.pool.release(ws)  # frees the worktree even when it raises
                except Exception as exc:  # a scored candidate keeps its score
                    rt.log(f"fixup candidate {index + 1}: could not detach its worktree: {exc}",
                           level="warning", unit_id=unit_id)

    async with anyio.create_task_group() as tg:
        for i, slot in enumerate(slots):
            tg.start_soon(candidate, i, slot)
    if fatal:
        raise FatalAgentError(fatal[0])
    if decide_after is not None and await decide_after.verdict():
        return  # flaky: the caller calls the round off

    winner = choose_winner([r for r in results if r is not None])
    if winner is None or not winner.verified:
        why = "no candidate produced a commit" if winner is None else "no candidate passed verification"
        rt.units.record_fixup_decision(
            unit_id, mission_id=rt.mission_id, round=round_no, candidate=None, reason=why,
        )
        if round_no >= max_rounds:
            rt.units.move(
                unit_id, UnitStatus.FAILED,
                reason=f"fixup failed after {round_no} round(s): {why}",
            )
            return
        await run_fixup(rt, unit_id, detail)
        return
    assert winner is not None and winner.head_commit is not None
    rt.units.record_fixup_decision(
        unit_id, mission_id=rt.mission_id, round=round_no,
        candidate=winner.index + 1, approach=winner.approach, verified=winner.verified,
        tests_passed=winner.tests_passed, head=winner.head_commit,
    )
    await deliver_winner(rt, unit, round_no, winner.index + 1, winner.approach, winner.head_commit)


async def deliver_winner(
    rt: Runtime, unit: Unit, round_no: int, candidate: int, approach: str, head: str
) -> None:
    """Through the fixup gate into the merge queue (or FAILED when the gate says no)."""
    unit_id = unit.id
    branch = f"mc/fixup/{unit_id}/{round_no}-{candidate}"
    green = rt.repo.green_head()
    # its own change: from the work under its stack, which merges ahead of it
    green = await stack_base(rt, rt.units.require(unit_id), green) or green
    stat = rt.repo.diff_stat(green, head)
    if not await approve_or_deny(
        rt, "fixup", f"fixup of {unit.title}: candidate {candidate} ({approach})",
        unit_id=unit_id, diffstat=stat.text, diff=rt.repo.diff_text(green, head),
    ):
        rt.units.move(unit_id, UnitStatus.FAILED, reason="fixup not approved")
        return
    # a unit sent to fixup before its large-merge gate (its precheck failed, or it conflicted
    # with mc/green when its agent was done) is put to it here, once
    if (stat.insertions + stat.deletions > rt.config.hitl.large_merge_lines
            and not large_merge_approved(rt, unit_id)
            and not await approve_or_deny(
                rt, "large_merge", f"merge {unit.title} after its fixup "
                f"({stat.insertions}+/{stat.deletions}-)", unit_id=unit_id,
                diffstat=stat.text, diff=rt.repo.diff_text(green, head))):
        rt.units.move(unit_id, UnitStatus.FAILED, reason="large merge not approved")
        return
    stacked = rt.units.require(unit_id).stacked_on
    if stacked and stacked.get("clash"):  # repaired: its head is no longer its own work alone
        rt.store.update("units", unit_id, stacked_on={**stacked, "clash": []})
    submit(rt, unit_id, branch, head)


def large_merge_approved(rt: Runtime, unit_id: str) -> bool:
    """Whether a person (or ``--yes``) approved a large merge of this unit already."""
    return bool(rt.store.query(
        "SELECT 1 FROM approvals WHERE unit_id = ? AND gate = 'large_merge' AND "
        "status = 'approved' LIMIT 1", (unit_id,)))


def undelivered_winner(rt: Runtime, unit_id: str) -> FixupWinner | None:
    """The winner of a round the process died after deciding (at the fixup gate, say):
    it is delivered again rather than paid for with a new round. The ledger keeps it on the
    unit's row until the unit next moves (delivered, or denied at the gate)."""
    winner = rt.units.pending_winner(unit_id)
    if winner is None:
        return None
    try:
        rt.repo.pygit[winner.head]
    except (KeyError, ValueError):
        return None  # the commit is gone: a new round
    return winner
