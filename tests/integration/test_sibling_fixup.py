"""A unit in FIXUP stacked on a sibling's work it conflicted with (engine/checks.py
``conflicted_with_siblings``): repaired on that work while it may merge, not otherwise; the
candidate's diff and blame are its own. (Found by a review of the change; each test failed
on the code before its fix.)"""

from __future__ import annotations

import sys
from pathlib import Path

import pygit2
import pytest

from engine.fixup import run_fixup
from engine.gitops.repo import GREEN_REF
from engine.models import UnitStatus
from engine.runtime import Runtime
from engine.stacking import merge_onto, repair_base, settle_stacks
from tests.integration.mission_support import add_unit, commit_on_branch, events, make_runtime

MARKERS = "grep -rqs '^<<<<<<<' shared"
RESOLVES = f'''
[[interaction]]
role = "fixup"
actions = [
  {{ type = "run", command = "{MARKERS} && printf 'one and two\\\\n' > shared/hot.txt || true" }},
  {{ type = "commit", message = "fixup: resolve" }},
]
'''
GIVES_UP = '''
[[interaction]]
role = "fixup"
actions = [ { type = "text", text = "cannot resolve this" } ]
'''


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def runtime(tmp_path: Path, cassette: str, rounds: int, extra: str = "") -> Runtime:
    """A runtime with stacking, one fixup candidate a round, ``rounds`` rounds, and a
    verification that fails on conflict markers in shared/."""
    return make_runtime(
        tmp_path, cassette,
        "[scheduler]\nstacked_branches = true\n"
        f"[green_branch]\nfixup_candidates = 1\nfixup_max_attempts = {rounds}\n{extra}"
        "[target.verification]\n"
        f'command = "! {MARKERS} && {sys.executable} -m unittest discover -s tests -t ."\n')


def add_pair(rt: Runtime, green: str, one: str, two: str, one_status: UnitStatus,
             clash: list[str] | None = None) -> None:
    """Leaves "one" (``one_status``) and "two" of one part; two in FIXUP stacked on one's
    work (as engine/checks.py conflicted_with_siblings leaves it, with ``clash``)."""
    add_unit(rt, "part", UnitStatus.RUNNING, title="Part", is_leaf=0)
    add_unit(rt, "one", one_status, title="one", branch="mc/unit/one", head_commit=one,
             base_commit=green, parent_id="part")
    stacked = {"green": green, "base": green, "heads": {"one": one}, "siblings": ["one"]}
    add_unit(rt, "two", UnitStatus.FIXUP, title="two", branch="mc/unit/two", head_commit=two,
             base_commit=green, parent_id="part", reason="conflict in shared/hot.txt",
             stacked_on={**stacked, **({"clash": clash} if clash is not None else {})})


def setup(tmp_path: Path, cassette: str, one_status: UnitStatus, rounds: int = 2,
          one_path: str = "shared/hot.txt") -> tuple[Runtime, str, str, str]:
    rt = runtime(tmp_path, cassette, rounds)
    green = rt.repo.green_head()
    one = commit_on_branch(rt, "mc/unit/one", green, one_path, "one\n", "one")
    if one_path != "shared/hot.txt":  # one also writes the shared file
        one = commit_on_branch(rt, "mc/unit/one", one, "shared/hot.txt", "one\n", "one hot")
    two = commit_on_branch(rt, "mc/unit/two", green, "shared/hot.txt", "two\n", "two")
    add_pair(rt, green, one, two, one_status, clash=["one"])
    # one's head passed its precheck (so a failure on it is conclusive)
    rt.store.append_event("unit.prechecked", mission_id=rt.mission_id, unit_id="one",
                          status="passed", accepted=True, head=one, inconclusive=False)
    return rt, green, one, two


@pytest.mark.anyio
@pytest.mark.parametrize("one_status", [UnitStatus.FAILED, UnitStatus.CANCELLED,
                                        UnitStatus.READY])
async def test_a_repair_is_not_built_on_a_siblings_work_that_will_never_merge(
        tmp_path: Path, one_status: UnitStatus) -> None:
    # "one" failed / was cancelled / is redoing its work while "two" was in FIXUP on it.
    rt, green, one, two = setup(tmp_path, RESOLVES, one_status)
    # two's own branch merges cleanly onto mc/green: nothing needs repairing any more
    assert merge_onto(rt.repo.path, green, [("two", two)])[0] is not None
    await run_fixup(rt, "two", "conflict in shared/hot.txt with the finished work of 'one'")
    # no round: its own work goes to the queue, not stacked on the dead sibling's
    (row,) = rt.store.rows("merges", "unit_id = ?", ("two",))
    assert row["head_commit"] == two and row["requires"] == []
    assert not rt.store.rows("events", "kind = 'fixup.started'")
    assert settle_stacks(rt, rt.units.units(rt.mission_id)) == []
    unit = rt.units.require("two")
    assert unit.status == UnitStatus.QUEUED, unit.reason
    assert unit.stacked_on["siblings"] == [] and unit.stacked_on["clash"] == []


@pytest.mark.anyio
async def test_a_unit_is_not_failed_for_a_conflict_with_a_failed_siblings_work(
        tmp_path: Path) -> None:
    # the fixup agent cannot resolve the conflict with "one"'s work; "one" failed for good
    # (after a passing precheck), so two's own branch would merge as it is
    rt, green, one, two = setup(tmp_path, GIVES_UP, UnitStatus.FAILED, rounds=1)
    await run_fixup(rt, "two", "conflict in shared/hot.txt with the finished work of 'one'")
    unit = rt.units.require("two")
    assert unit.status != UnitStatus.FAILED, unit.reason


@pytest.mark.anyio
async def test_a_repair_whose_stack_does_not_merge_still_resolves_the_siblings_conflict(
        tmp_path: Path) -> None:
    # one writes a/one.txt and shared/hot.txt; two writes shared/hot.txt (they conflict).
    # Then mc/green moves with its own a/one.txt: one's head no longer merges onto it, so
    # repair_base falls back to mc/green alone: the candidate never sees the sibling conflict
    rt, green, one, two = setup(tmp_path, RESOLVES, UnitStatus.QUEUED, one_path="a/one.txt")
    moved = commit_on_branch(rt, "mc/other", green, "a/one.txt", "other\n", "other")
    rt.repo.set_owned_ref(GREEN_REF, moved, "test: green moved")
    base, _ = await repair_base(rt, rt.units.require("two"), moved)
    await run_fixup(rt, "two", "conflict in shared/hot.txt with the finished work of 'one'")
    row = rt.store.rows("merges", "unit_id = ?", ("two",))[-1]
    # one's repair lands: mc/green with one's work, a/one.txt resolved (parents: green, one)
    repo = rt.repo.pygit
    index = pygit2.Index()
    index.read_tree(repo[pygit2.Oid(hex=moved)].peel(pygit2.Commit).tree)
    for path, text in (("a/one.txt", "other\none\n"), ("shared/hot.txt", "one\n")):
        index.add(pygit2.IndexEntry(path, repo.create_blob(text.encode()),
                                    pygit2.enums.FileMode.BLOB))
    sig = pygit2.Signature("t", "t@l")
    green2 = str(repo.create_commit(None, sig, sig, "one merged", index.write_tree(repo),
                                    [pygit2.Oid(hex=moved), pygit2.Oid(hex=one)]))
    _, clash = merge_onto(rt.repo.path, green2, [("two", row["head_commit"])])
    # the repair could not see that conflict: two is no longer stacked on one, and its merge
    # does not wait for one's work (the queue finds the conflict, as before stacking)
    assert base == moved and clash == ["shared/hot.txt"]
    assert row["requires"] == []
    unit = rt.units.require("two")
    assert unit.stacked_on["heads"] == {} and unit.stacked_on["siblings"] == []


@pytest.mark.anyio
async def test_a_sibling_repair_is_not_put_to_the_large_merge_gate_for_the_siblings_lines(
        tmp_path: Path) -> None:
    # gate on, 4 lines count as large. one: 3 lines of a/one.txt + shared/hot.txt (4 lines,
    # no gate); two: shared/hot.txt + 2 lines of b/two.txt (3 lines, no gate before the queue).
    rt = runtime(tmp_path, RESOLVES, 1, '[hitl]\nenabled = true\ngates = ["large_merge"]\n'
                 "large_merge_lines = 4\npoll_timeout = 0.5\n")
    green = rt.repo.green_head()
    one = commit_on_branch(rt, "mc/unit/one", green, "a/one.txt", "1\n2\n3\n", "one")
    one = commit_on_branch(rt, "mc/unit/one", one, "shared/hot.txt", "one\n", "one hot")
    two = commit_on_branch(rt, "mc/unit/two", green, "b/two.txt", "1\n2\n", "two")
    two = commit_on_branch(rt, "mc/unit/two", two, "shared/hot.txt", "two\n", "two hot")
    assert rt.repo.diff_stat(green, two).insertions == 3
    add_pair(rt, green, one, two, UnitStatus.QUEUED)
    await run_fixup(rt, "two", "conflict in shared/hot.txt with the finished work of 'one'")
    asked = rt.store.rows("approvals", "unit_id = ? AND gate = 'large_merge'", ("two",))
    unit = rt.units.require("two")
    assert not asked and unit.status == UnitStatus.QUEUED


def test_a_restart_does_not_withdraw_work_stacked_on_a_siblings_finished_work(
        tmp_path: Path) -> None:
    # "one" was in its precheck at a kill -9: adopt_for_resume made it READY with
    # resume_point "review" (its finished head goes on, unchanged). "two", repaired on one's
    # work (conflicted_with_siblings), had its winner in the queue.
    rt, green, one, two = setup(tmp_path, RESOLVES, UnitStatus.READY)
    rt.store.update("units", "one", resume_point="review")
    rt.store.update("units", "two", status="queued")
    rt.queue.submit("two", "mc/unit/two", two, [one])
    withdrawn = settle_stacks(rt, rt.units.units(rt.mission_id))
    assert withdrawn == [], "its sibling's finished work goes on: nothing to withdraw"


FAILS = '''
[[interaction]]
role = "fixup"
actions = [ { type = "fail", error = "session timed out", reason = "timeout", status = "timeout" } ]
'''


@pytest.mark.anyio
async def test_a_candidate_left_with_conflict_markers_is_not_delivered_as_inconclusive(
        tmp_path: Path) -> None:
    # the usual moment: two's agent is done while one is in its precheck (no verdict yet).
    # two's only fixup agent dies without touching the merge: its candidate is the merge
    # commit with conflict markers, and its verification fails on them (its own failure)
    rt = runtime(tmp_path, FAILS, 2)
    green = rt.repo.green_head()
    one = commit_on_branch(rt, "mc/unit/one", green, "shared/hot.txt", "one\n", "one")
    two = commit_on_branch(rt, "mc/unit/two", green, "shared/hot.txt", "two\n", "two")
    add_pair(rt, green, one, two, UnitStatus.RUNNING)
    await run_fixup(rt, "two", "conflict in shared/hot.txt with the finished work of 'one'")
    unit = rt.units.require("two")
    candidates = events(rt, "fixup.candidate")  # one a round, two rounds
    assert [(c["verified"], "inconclusive" in c) for c in candidates] == [(False, False)] * 2
    assert unit.status == UnitStatus.FAILED
    assert rt.store.rows("merges", "unit_id = ?", ("two",)) == []


@pytest.mark.anyio
async def test_a_repair_on_a_live_siblings_work_is_merged_after_it_and_clears_the_clash(
        tmp_path: Path) -> None:
    # one is in the queue: two's candidate starts on its work, resolves the conflict, and its
    # winner waits for one's merge. Once repaired, two's head is no longer its own work
    # alone: a later failure of its winner is never "the clash is gone, submit its own work"
    rt, green, one, two = setup(tmp_path, RESOLVES, UnitStatus.QUEUED)
    await run_fixup(rt, "two", "conflict in shared/hot.txt with the finished work of 'one'")
    unit = rt.units.require("two")
    assert unit.status == UnitStatus.QUEUED, unit.reason
    (row,) = rt.store.rows("merges", "unit_id = ?", ("two",))
    assert row["requires"] == [one] and rt.repo.contains(row["head_commit"], one)
    assert unit.stacked_on["siblings"] == ["one"] and unit.stacked_on["clash"] == []
    text = rt.repo.pygit[pygit2.Oid(hex=row["head_commit"])].peel(pygit2.Commit).tree
    assert rt.repo.pygit[text["shared/hot.txt"].id].data == b"one and two\n"
