"""Stacked branches (``[scheduler] stacked_branches``, on by default): a unit whose
dependencies' agents are done starts on their work instead of waiting for it to reach
``mc/green``.

A *stacked* change is one built on other changes that have not landed yet (stacked diffs:
Phabricator, ghstack, Graphite); Zuul's dependent pipeline tests a change on top of the
changes queued ahead of it. Here that idea is applied to dispatch:

* a leaf is READY once each leaf it depends on is MERGED, or its agent is done (a head
  commit, and in its precheck, review or the merge queue);
* its agent starts on a *stack base*: ``mc/green`` with the head of every dependency not in it
  yet merged in (in memory, as the queue builds candidates). If they conflict, the unit goes
  back to PLANNED and waits for the merges as before;
* its review, precheck and diff are measured from the stack base, so they see its own change;
  the precheck is judged against the baseline of the ``mc/green`` under the stack, and a
  failing one is not blamed on the unit while a dependency's stacked-on head is not known to
  pass (:func:`unverified`): the unit goes on to the queue, which verifies it on the
  dependency's repaired work;
* its merge row *requires* those heads: the queue merges it only onto a candidate that already
  contains them (``engine.gitops.candidate.build_chain``), so a stacked branch never carries a
  dependency's commits into ``mc/green`` ahead of that dependency, whatever happens to it;
* a dependency repaired by fixup keeps its old head as an ancestor (fixup merges the unit's
  branch into its candidates), so the requirement is met once the repair merges. A dependency
  that fails, or merges without that head (redone from scratch), leaves it unmet for good:
  :func:`settle_stacks` withdraws the stacked merge, and the unit is BLOCKED or runs again
  from ``mc/green``.

What the rules need is in the store (``units.stacked_on``, ``merges.requires``), so a
``kill -9`` at any point resumes with the same rules. Only ``Runtime.stack_refused`` (stacks
that conflicted, not tried again on the same heads) is in memory: a restart tries each once more.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pygit2

from engine.gitops.candidate import merge_heads
from engine.gitops.repo import object_view, open_repository
from engine.ledger import Unit, chains, leaf_dependencies
from engine.models import MergeStatus, UnitStatus
from engine.runtime import Runtime

IN_QUEUE = frozenset({UnitStatus.QUEUED, UnitStatus.MERGING, UnitStatus.VERIFYING})
# with a head commit in these, a unit's agent is done: in its precheck (RUNNING), its review,
# or the queue
DONE = IN_QUEUE | {UnitStatus.RUNNING, UnitStatus.REVIEWING}
GONE = frozenset({UnitStatus.FAILED, UnitStatus.BLOCKED, UnitStatus.CANCELLED})
# back to these, a unit's finished work was let go: its next session starts from mc/green
REDONE = frozenset({UnitStatus.READY, UnitStatus.PLANNED})


def stackable(dep: Unit) -> bool:
    """Whether a unit may start on ``dep``'s work: its agent is done (a head commit, in its
    precheck, review or the queue). Work stacked on a head that then fails its precheck or
    review is never merged ahead of it (the queue's ``requires``) and its own precheck is not
    blamed for it (:func:`unverified`)."""
    return dep.status in DONE and bool(dep.head_commit)


@dataclass(frozen=True)
class Stack:
    """Where a stacked unit starts: ``base`` is ``green`` with ``heads`` (dependency unit id
    -> the head commit merged in) merged in."""

    green: str
    base: str
    heads: dict[str, str]
    siblings: frozenset[str] = frozenset()  # of heads: siblings' work, not dependencies'

    def record(self) -> dict[str, Any]:
        """The ``units.stacked_on`` value."""
        out: dict[str, Any] = {"green": self.green, "base": self.base, "heads": dict(self.heads)}
        if self.siblings:
            out["siblings"] = sorted(self.siblings)
        return out


def can_stack(unit: Unit, units: list[Unit]) -> bool:
    """Whether every leaf ``unit`` depends on is MERGED or :func:`stackable`."""
    by_id = {u.id: u for u in units}
    for dep_id in leaf_dependencies(unit, units):
        dep = by_id.get(dep_id)
        if dep is None:
            continue
        if dep.status != UnitStatus.MERGED and not stackable(dep):
            return False
    return True


async def plan_stack(rt: Runtime, unit: Unit) -> Stack | str | None:
    """The stack ``unit`` starts on: None when every dependency is in ``mc/green`` and no
    sibling's work is on its way (a plain start), or a reason (str) why it cannot start now (a
    dependency left the queue, or the dependencies conflict with ``mc/green`` or each other:
    it waits for their merges). With ``[scheduler] stack_on_siblings``, the finished work of
    its plan-tree siblings on their way to the queue is stacked under it too
    (:func:`sibling_heads`), unless that conflicts: then it starts without them."""
    units = rt.units.units(rt.mission_id)
    by_id = {u.id: u for u in units}
    green = rt.repo.green_head()
    heads: dict[str, str] = {}
    for dep_id in sorted(leaf_dependencies(unit, units)):
        dep = by_id.get(dep_id)
        if dep is None or dep.status == UnitStatus.MERGED:
            continue
        if not stackable(dep):
            return f"its dependency {dep.title!r} is {dep.status.value}"
        if not rt.repo.contains(green, dep.head_commit):
            heads[dep_id] = dep.head_commit
    sched = rt.config.scheduler
    siblings = (sibling_heads(rt, unit, units, green)
                if sched.stacked_branches and sched.stack_on_siblings else {})
    if siblings:
        labels = [(by_id[d].title, head) for d, head in {**heads, **siblings}.items()]
        base, _ = await anyio.to_thread.run_sync(merge_onto, rt.repo.path, green, labels)
        if base is not None:
            return Stack(green, base, {**heads, **siblings}, frozenset(siblings))
    if not heads:
        return None
    labels = [(by_id[d].title, head) for d, head in heads.items()]
    base, conflicts = await anyio.to_thread.run_sync(merge_onto, rt.repo.path, green, labels)
    if base is None:
        return f"its dependencies conflict with mc/green in {', '.join(conflicts)}"
    return Stack(green, base, heads)


def sibling_heads(rt: Runtime, unit: Unit, units: list[Unit], green: str) -> dict[str, str]:
    """The plan-tree siblings of ``unit`` whose agents are done and whose work is not in
    ``green`` yet (:func:`stackable`: in its precheck, review or the queue), by id, with
    their heads: the work ``unit`` would conflict with when the second of them merges if it
    started without it (siblings tend to touch the same files: ``engine/pipeline/ordering.py``).
    Not a sibling on the unit's own dependency chain (it is stacked on as a dependency, or the
    sibling waits for it), nor one whose own stack holds this unit's earlier work (each would
    wait for the other).

    Work that may still fail is stacked on, as a dependency's is: the unit's precheck is then
    inconclusive while that work is unverified (:func:`unverified`), and a unit that breaks the
    tests itself reaches the queue. Stacking only on siblings with a conclusive passing
    precheck was measured and dropped: fewer such culprits, but about 0.7 s more in the fleet
    benchmark's median (docs/scaling.md)."""
    if not unit.parent_id:
        return {}
    upstream = chains(units)
    by_id = {u.id: u for u in units}
    out: dict[str, str] = {}
    for sib in units:
        if (sib.id == unit.id or sib.parent_id != unit.parent_id or not sib.is_leaf
                or not stackable(sib)
                or sib.id in upstream.get(unit.id, set())
                or unit.id in upstream.get(sib.id, set())
                or rt.repo.contains(green, sib.head_commit)
                or unit.id in stacked_under(sib, by_id)):
            continue
        out[sib.id] = str(sib.head_commit)
    return out


def stacked_under(unit: Unit, by_id: dict[str, Unit]) -> set[str]:
    """The ids of every unit whose work is under ``unit``'s stack, directly or through theirs."""
    out: set[str] = set()
    todo = list((unit.stacked_on or {}).get("heads") or {})
    while todo:
        uid = todo.pop()
        if uid in out:
            continue
        out.add(uid)
        below = by_id.get(uid)
        if below is not None:
            todo.extend((below.stacked_on or {}).get("heads") or {})
    return out


def merge_onto(path: Path, green: str, heads: list[tuple[str, str]]) -> tuple[str | None, list[str]]:
    """:func:`engine.gitops.candidate.merge_heads` of ``(label, head)`` onto ``green`` in the
    repository at ``path``, on a handle of its own (for a worker thread; with ``green``'s
    merge attributes): (the merged commit or None, the conflicting paths)."""
    repo = open_repository(path)
    tree = repo[pygit2.Oid(hex=green)].peel(pygit2.Tree)
    return merge_heads(object_view(repo, attributes=tree), green, heads)


def stack_key(unit: Unit, units: list[Unit]) -> tuple[tuple[str, str], ...]:
    """The unmerged dependencies of ``unit`` with their heads: a stack refused on these is
    not tried again until one of them merges or moves (``Runtime.stack_refused``)."""
    by_id = {u.id: u for u in units}
    return tuple(sorted((d, by_id[d].head_commit or "") for d in leaf_dependencies(unit, units)
                        if d in by_id and by_id[d].status != UnitStatus.MERGED))


def stack_merged(rt: Runtime, stacked_on: dict[str, Any] | None, green: str) -> bool:
    """Whether every head a unit is stacked on (``units.stacked_on``) is in ``green``
    (True for a unit not stacked)."""
    heads = (stacked_on or {}).get("heads") or {}
    return all(rt.repo.contains(green, head) for head in heads.values())


def judged_on(stacked_on: dict[str, Any] | None, base: str) -> str:
    """The ``mc/green`` whose baseline judges a unit's precheck when its work starts at
    ``base``: the one under its stack when ``base`` is a stack base, else ``base`` itself."""
    stacked = stacked_on or {}
    return str(stacked.get("green") or base) if stacked.get("base") == base else base


def requirements(rt: Runtime, unit: Unit) -> list[str]:
    """The stacked-on heads ``mc/green`` does not contain yet (the merge row's ``requires``)."""
    heads = (unit.stacked_on or {}).get("heads") or {}
    green = rt.repo.green_head()
    return [head for head in heads.values() if not rt.repo.contains(green, head)]


async def stack_base(rt: Runtime, unit: Unit, green: str) -> str | None:
    """``green`` with the stacked-on heads of ``unit`` it lacks (:func:`requirements`) merged
    in, in memory: the work the unit's merge waits for; ``green`` when nothing is stacked,
    None when those heads do not merge."""
    heads = [(dep, head) for dep, head in ((unit.stacked_on or {}).get("heads") or {}).items()
             if not rt.repo.contains(green, head)]
    if not heads:
        return green
    base, _ = await anyio.to_thread.run_sync(merge_onto, rt.repo.path, green, heads)
    return base


async def repair_base(rt: Runtime, unit: Unit, green: str) -> tuple[str, Unit]:
    """Where a fixup candidate of ``unit`` starts, and the unit: :func:`stack_base`, so the
    repair is made on the work its merge waits for (a sibling's it conflicted with:
    ``engine/checks.py conflicts_with_siblings``). When those heads no longer merge (``green``
    moved), the candidate starts on ``green`` and merges the unit's branch, which holds its
    dependencies' heads; a sibling's head it does not hold is taken out of its stack (the
    repair could not see that conflict, and its merge must not wait for that work)."""
    base = await stack_base(rt, unit, green)
    if base is not None:
        return base, unit
    heads = (unit.stacked_on or {}).get("heads") or {}
    own = str(unit.head_commit or "")
    apart = [d for d in (unit.stacked_on or {}).get("siblings") or ()
             if d in heads and not (own and rt.repo.contains(own, heads[d]))]
    if apart:
        unit = drop_siblings(rt, unit, apart, "its stack no longer merges onto mc/green; "
                             "repaired on mc/green")
    return green, unit


def unverified(rt: Runtime, unit: Unit) -> list[str]:
    """The dependencies ``unit`` was stacked on whose stacked-on head is not known to pass:
    not in ``mc/green``, and no conclusive accepted precheck of that very head (one that ran,
    and was not itself stacked on unverified work). While there is one, a failing precheck of
    ``unit`` may be that dependency's failure and is not blamed on it
    (``engine/dispatch.py: precheck_passed``). Titles, for the record."""
    heads = (unit.stacked_on or {}).get("heads") or {}
    if not heads:
        return []
    green = rt.repo.green_head()
    out: list[str] = []
    for dep_id, head in heads.items():
        dep = rt.units.get(dep_id)
        if rt.repo.contains(green, head):
            continue
        if prechecked(rt, dep_id, head):
            continue
        out.append(dep.title if dep else dep_id)
    return out


def prechecked(rt: Runtime, unit_id: str, head: str) -> bool:
    """Whether ``head`` of ``unit_id`` passed a conclusive precheck: accepted, one that ran
    (not ``error``), and not itself stacked on unverified work."""
    return bool(rt.store.query(
        "SELECT 1 FROM events WHERE kind = 'unit.prechecked' AND unit_id = ? AND "
        "json_extract(payload, '$.head') = ? AND json_extract(payload, '$.accepted') AND "
        "json_extract(payload, '$.status') != 'error' AND "
        "NOT coalesce(json_extract(payload, '$.inconclusive'), 0)", (unit_id, head)))


def settle_stacks(rt: Runtime, units: list[Unit]) -> list[str]:
    """Withdraw the queued stacked branches whose requirement can never be met: a dependency
    FAILED, BLOCKED or CANCELLED (the unit -> BLOCKED; a sibling's: READY), MERGED without
    the head it was stacked on, or redoing its work (back to READY or PLANNED, or on work that
    does not hold that head: the unit -> READY, to run again from ``mc/green``). Call it only
    while no queue run is in flight (a run may be merging the row). Returns the withdrawn
    unit ids."""
    withdrawn: list[str] = []
    while True:  # a withdrawal can leave what was stacked on it unmet for good: settle it too
        more = _settle_once(rt, units)
        if not more:
            return withdrawn
        withdrawn.extend(more)
        units = rt.units.units(rt.mission_id)


def unmet(rt: Runtime, dep: Unit | None, head: str, green: str) -> str | None:
    """Why ``dep``'s ``head``, stacked on, can never reach ``green`` by ``dep``'s merge, or
    None while it still may: ``"gone"`` (FAILED, BLOCKED, CANCELLED, or no such unit),
    ``"merged other work"`` (MERGED without it), ``"redoing"`` (back to READY or PLANNED, or
    on work that does not hold it: a review rejected it, its own stack was withdrawn; not a
    unit a restart put back to READY to take its finished work on, ``resume_point``
    "review")."""
    if dep is None or dep.status in GONE:
        return "gone"
    if rt.repo.contains(green, head):
        return None
    if dep.status == UnitStatus.MERGED:
        return "merged other work"
    holds = bool(dep.head_commit) and rt.repo.contains(str(dep.head_commit), head)
    resuming = dep.status == UnitStatus.READY and dep.resume_point == "review"
    if (dep.status in REDONE and not (resuming and holds)) or not holds:
        return "redoing"
    return None


def _settle_once(rt: Runtime, units: list[Unit]) -> list[str]:
    by_id = {u.id: u for u in units}
    green = rt.repo.green_head()
    withdrawn: list[str] = []
    for item in rt.queue.held():
        unit = by_id.get(item.unit_id or "")
        if unit is None or unit.status != UnitStatus.QUEUED or not unit.stacked_on:
            continue
        verdict: tuple[UnitStatus, str] | None = None
        siblings = set(unit.stacked_on.get("siblings") or ())
        for dep_id, head in (unit.stacked_on.get("heads") or {}).items():
            dep = by_id.get(dep_id) or rt.units.get(dep_id)
            why = unmet(rt, dep, head, green)
            title = dep.title if dep else dep_id
            if why == "gone" and dep_id in siblings:
                verdict = (UnitStatus.READY, f"its sibling {title!r}, whose work this unit was "
                           "stacked on, will not merge: running it again from mc/green")
            elif why == "gone":
                verdict = (UnitStatus.BLOCKED, f"a dependency failed: {title!r}, whose work this "
                           "unit was stacked on, will not merge")
            elif why == "merged other work":
                verdict = (UnitStatus.READY, f"{title!r} merged other work than the "
                           f"{head[:10]} this unit was stacked on: running it again from mc/green")
            elif why == "redoing":
                # redone from mc/green, it will never hold this head. Waiting for it to merge
                # could wait for ever: a unit stacked on this one may be what it stacks on next
                verdict = (UnitStatus.READY, f"{title!r} is redoing the work this unit was "
                           f"stacked on ({head[:10]}): running it again from mc/green")
            if verdict is not None:
                break
        if verdict is None:
            continue
        status, reason = verdict
        with rt.store.transaction():
            rt.queue.move_merge(item, MergeStatus.WITHDRAWN, reason)
            rt.units.move(unit.id, status, reason=reason, stacked_on=None, resume_point=None)
        rt.log(f"unit {unit.id}: stacked branch withdrawn from the merge queue: {reason}",
               unit_id=unit.id)
        withdrawn.append(unit.id)
    return withdrawn


def drop_siblings(rt: Runtime, unit: Unit, sibling_ids: list[str], why: str) -> Unit:
    """Take ``sibling_ids`` out of ``unit``'s stack (``units.stacked_on``: heads, siblings and
    ``clash``), logged with ``why``; the unit as it is now."""
    stacked = without_siblings(unit.stacked_on, sibling_ids)
    titles = ", ".join(repr((rt.units.get(d) or unit).title) for d in sibling_ids)
    rt.store.update("units", unit.id, stacked_on=stacked)
    rt.log(f"unit {unit.id}: no longer stacked on the work of its sibling(s) {titles}: {why}",
           unit_id=unit.id)
    return rt.units.require(unit.id)


def dead_siblings(rt: Runtime, unit: Unit) -> list[str]:
    """The siblings under ``unit``'s stack whose stacked-on work can never merge
    (:func:`unmet`) and that the unit's head does not hold (a sibling it conflicted with:
    ``stacked_on.clash``): a unit in FIXUP on them is repaired without them
    (``engine/fixup.py``). Work its head holds stays required, so the unit is withdrawn and
    runs again rather than carry that work into ``mc/green`` (:func:`settle_stacks`)."""
    stacked = unit.stacked_on or {}
    heads = stacked.get("heads") or {}
    green = rt.repo.green_head()
    own = str(unit.head_commit or "")
    return [d for d in stacked.get("siblings") or () if d in heads
            and not (own and rt.repo.contains(own, heads[d]))
            and unmet(rt, rt.units.get(d), heads[d], green) is not None]


def without_siblings(stacked: dict[str, Any] | None, sibling_ids: list[str]) -> dict[str, Any]:
    """``units.stacked_on`` with ``sibling_ids`` taken out (heads, siblings, clash)."""
    out = dict(stacked or {})
    gone = set(sibling_ids)
    out["heads"] = {d: h for d, h in (out.get("heads") or {}).items() if d not in gone}
    for key in ("siblings", "clash"):
        if key in out:
            out[key] = [d for d in out[key] if d not in gone]
    return out
