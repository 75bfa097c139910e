"""A repairing unit and its siblings' work that will never merge (engine/fixup.py
``clash_gone``, engine/stacking.py ``dead_siblings``): work its own head holds stays required
(so it is withdrawn, never merged through the unit), and a restart inside the no-round path
finds it whole. (Found by a review; each test failed on the code before its fix.)"""
from __future__ import annotations

from pathlib import Path

import pytest

from engine.fixup import run_fixup
from engine.models import UnitStatus
from engine.runtime import Runtime
from engine.stacking import merge_onto, settle_stacks
from tests.integration.mission_support import add_unit, commit_on_branch
from tests.integration.test_sibling_fixup import RESOLVES, runtime


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def assert_dead_work_required(rt: Runtime, dead: str) -> None:
    """After settling the stacks, a queued head of "two" that carries the ``dead`` commit at
    least waits for it (its merge row requires it): that work never merges through two."""
    settle_stacks(rt, rt.units.units(rt.mission_id))
    for row in rt.store.rows("merges", "unit_id = ? AND status = 'queued'", ("two",)):
        assert not rt.repo.contains(row["head_commit"], dead) or dead in row["requires"], (
            f"two queued {row['head_commit'][:10]} holding dead work {dead[:10]} "
            f"with requires={row['requires']}")


@pytest.mark.anyio
@pytest.mark.parametrize("zero_status", [UnitStatus.FAILED, UnitStatus.READY])
async def test_clash_gone_does_not_submit_a_dead_siblings_work_the_head_holds(
        tmp_path: Path, zero_status: UnitStatus) -> None:
    # two started stacked on sibling zero's finished work (plan_stack, stack_on_siblings):
    # its head holds zero's commit. Later two conflicted with sibling one -> FIXUP, clash=[one].
    # Then zero failed (e.g. large merge not approved) / is redoing, and one failed.
    rt = runtime(tmp_path, RESOLVES, 2)
    green = rt.repo.green_head()
    zero = commit_on_branch(rt, "mc/unit/zero", green, "z/zero.txt", "zero\n", "zero")
    one = commit_on_branch(rt, "mc/unit/one", green, "shared/hot.txt", "one\n", "one")
    base, _ = merge_onto(rt.repo.path, green, [("zero", zero)])  # two's stack base
    two = commit_on_branch(rt, "mc/unit/two", base, "shared/hot.txt", "two\n", "two")
    assert rt.repo.contains(two, zero)
    add_unit(rt, "part", UnitStatus.RUNNING, title="Part", is_leaf=0)
    add_unit(rt, "zero", zero_status, title="zero", branch="mc/unit/zero",
             head_commit=None if zero_status == UnitStatus.READY else zero,
             base_commit=green, parent_id="part")
    add_unit(rt, "one", UnitStatus.FAILED, title="one", branch="mc/unit/one", head_commit=one,
             base_commit=green, parent_id="part")
    stacked = {"green": green, "base": base, "heads": {"zero": zero, "one": one},
               "siblings": ["one", "zero"], "clash": ["one"]}
    add_unit(rt, "two", UnitStatus.FIXUP, title="two", branch="mc/unit/two", head_commit=two,
             base_commit=base, parent_id="part", reason="conflict", stacked_on=stacked)
    await run_fixup(rt, "two", "conflict in shared/hot.txt with the finished work of 'one'")
    assert_dead_work_required(rt, zero)


FIXES = '''
[[interaction]]
role = "fixup"
actions = [
  { type = "run", command = "printf 'fixed\\\\n' > fix.txt" },
  { type = "commit", message = "fixup: fix" },
]
'''


@pytest.mark.anyio
async def test_a_repair_does_not_carry_a_dead_stacked_siblings_work_without_requiring_it(
        tmp_path: Path) -> None:
    # two started stacked on sibling zero's finished work (its head holds zero's commit) and
    # is in FIXUP for a failure of its own (no clash). zero then failed for good.
    rt = runtime(tmp_path, FIXES, 2)
    green = rt.repo.green_head()
    zero = commit_on_branch(rt, "mc/unit/zero", green, "z/zero.txt", "zero\n", "zero")
    base, _ = merge_onto(rt.repo.path, green, [("zero", zero)])
    two = commit_on_branch(rt, "mc/unit/two", base, "t/two.txt", "two\n", "two")
    add_unit(rt, "part", UnitStatus.RUNNING, title="Part", is_leaf=0)
    add_unit(rt, "zero", UnitStatus.FAILED, title="zero", branch="mc/unit/zero",
             head_commit=zero, base_commit=green, parent_id="part")
    stacked = {"green": green, "base": base, "heads": {"zero": zero}, "siblings": ["zero"]}
    add_unit(rt, "two", UnitStatus.FIXUP, title="two", branch="mc/unit/two", head_commit=two,
             base_commit=base, parent_id="part", reason="tests failed", stacked_on=stacked)
    await run_fixup(rt, "two", "verification failed")
    assert_dead_work_required(rt, zero)


class Killed(BaseException):
    pass


@pytest.mark.anyio
async def test_a_kill_between_dropping_the_dead_clash_and_submitting_does_not_fail_the_unit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # as test_a_unit_is_not_failed_for_a_conflict_with_a_failed_siblings_work, with a kill -9
    # while clash_gone test-merges two's head onto mc/green (after drop_siblings is stored)
    import engine.fixup as fixup
    from tests.integration.test_sibling_fixup import GIVES_UP, setup
    rt, green, one, two = setup(tmp_path, GIVES_UP, UnitStatus.FAILED, rounds=1)

    async def killed(*a, **k):
        raise Killed()
    real = fixup.conflicts_on_green
    monkeypatch.setattr(fixup, "conflicts_on_green", killed)
    with pytest.raises(Killed):
        await run_fixup(rt, "two", "conflict in shared/hot.txt with the finished work of 'one'")
    monkeypatch.setattr(fixup, "conflicts_on_green", real)
    # the resumed run
    await run_fixup(rt, "two", "conflict in shared/hot.txt with the finished work of 'one'")
    unit = rt.units.require("two")
    assert unit.status != UnitStatus.FAILED, unit.reason


@pytest.mark.anyio
@pytest.mark.parametrize("kill", [False, True])
async def test_kill_in_clash_gone_with_rounds_used_up(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kill: bool) -> None:
    # two used its one fixup round in an earlier life (its winner's stack was withdrawn, it ran
    # again), then conflicted with one's work -> FIXUP, clash=[one]; one failed.
    import engine.fixup as fixup
    from tests.integration.test_sibling_fixup import GIVES_UP, setup
    rt, green, one, two = setup(tmp_path, GIVES_UP, UnitStatus.FAILED, rounds=1)
    rt.store.update("units", "two", fixup_rounds=1)

    async def killed(*a, **k):
        raise Killed()
    if kill:
        real = fixup.conflicts_on_green
        monkeypatch.setattr(fixup, "conflicts_on_green", killed)
        with pytest.raises(Killed):
            await run_fixup(rt, "two", "conflict with 'one'")
        monkeypatch.setattr(fixup, "conflicts_on_green", real)
    await run_fixup(rt, "two", "conflict with 'one'")
    unit = rt.units.require("two")
    assert unit.status == UnitStatus.QUEUED, unit.reason


@pytest.mark.anyio
async def test_a_failed_winner_repaired_on_a_dead_siblings_work_does_not_carry_it(
        tmp_path: Path) -> None:
    # 765ab81's case, one step on: two's winner (repaired on one's work: it holds one's
    # commit) was queued and clash cleared; the queue failed it -> FIXUP; then one failed.
    rt = runtime(tmp_path, FIXES, 3)
    green = rt.repo.green_head()
    one = commit_on_branch(rt, "mc/unit/one", green, "shared/hot.txt", "one\n", "one")
    winner = commit_on_branch(rt, "mc/fixup/two/1-1", one, "shared/hot.txt", "one and two\n",
                              "fixup: resolve")
    add_unit(rt, "part", UnitStatus.RUNNING, title="Part", is_leaf=0)
    add_unit(rt, "one", UnitStatus.FAILED, title="one", branch="mc/unit/one", head_commit=one,
             base_commit=green, parent_id="part")
    stacked = {"green": green, "base": green, "heads": {"one": one}, "siblings": ["one"],
               "clash": []}
    add_unit(rt, "two", UnitStatus.FIXUP, title="two", branch="mc/fixup/two/1-1",
             head_commit=winner, base_commit=green, parent_id="part", fixup_rounds=1,
             reason="verification failed", stacked_on=stacked)
    await run_fixup(rt, "two", "verification failed")
    assert_dead_work_required(rt, one)
