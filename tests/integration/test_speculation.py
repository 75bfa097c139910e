"""Speculation branching on a real repo with scripted agents: three branches work one unit,
one breaks the tests; the winner per selection policy goes on as the unit's branch, the
losers are recorded and every worktree goes back to the pool."""

from __future__ import annotations

from pathlib import Path

import pygit2
import pytest

from engine.models import UnitStatus
from engine.runtime import Runtime
from engine.speculation import run_branches, runner_for
from tests.integration.mission_support import add_unit, events, make_runtime

# Branch 1 breaks greet (smallest diff, fails the tests); branch 2 adds a small module and
# its test; branch 3 a larger module and its test (as many tests pass as with branch 2).
# The reviewer likes branch 1 best, then 3, then 2.
CASSETTE = '''
[[interaction]]
role = "worker"
when = { candidate = "1" }
cost_usd = 0.25
actions = [
  { type = "write", path = "app/greet.py", content = "def greet(name):\\n    return f'bye {name}'\\n" },
  { type = "commit", message = "bye" },
]

[[interaction]]
role = "worker"
when = { candidate = "2" }
cost_usd = 0.25
actions = [
  { type = "write", path = "app/farewell.py", content = "def farewell(name):\\n    return 'see you ' + name\\n" },
  { type = "write", path = "tests/test_farewell.py", content = "import unittest\\nfrom app.farewell import farewell\\n\\n\\nclass T(unittest.TestCase):\\n    def test_it(self):\\n        self.assertEqual(farewell('x'), 'see you x')\\n" },
  { type = "commit", message = "farewell" },
]

[[interaction]]
role = "worker"
when = { candidate = "3" }
cost_usd = 0.25
actions = [
  { type = "write", path = "app/shout.py", content = "# Shouting.\\n\\n\\ndef shout(name):\\n    # Greet loudly.\\n    text = 'HELLO ' + name\\n    return text.upper()\\n" },
  { type = "write", path = "tests/test_shout.py", content = "import unittest\\n\\nfrom app.shout import shout\\n\\n\\nclass ShoutTest(unittest.TestCase):\\n    def test_shout(self):\\n        self.assertEqual(shout('x'), 'HELLO X')\\n" },
  { type = "commit", message = "shout" },
]

[[interaction]]
role = "reviewer"
match = "bye"
actions = [{ type = "text", text = '{"alignment": 9, "approach": 9, "tests": 9, "feedback": "b1"}' }]

[[interaction]]
role = "reviewer"
match = "farewell"
actions = [{ type = "text", text = '{"alignment": 6, "approach": 6, "tests": 6, "feedback": "b2"}' }]

[[interaction]]
role = "reviewer"
match = "shout"
actions = [{ type = "text", text = '{"alignment": 8, "approach": 8, "tests": 8, "feedback": "b3"}' }]
'''


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def speculating_runtime(tmp_path: Path, selection: str, cassette: str = CASSETTE) -> Runtime:
    rt = make_runtime(tmp_path, cassette, "[speculation]\nenabled = true\nbranch_count = 3\n"
                      f'selection = "{selection}"\n')
    add_unit(rt, "u1", UnitStatus.READY, uncertain=1)
    return rt


def assert_pool_returned(rt: Runtime, free_before: set[int]) -> None:
    assert rt.free_slots == free_before
    assert not rt.pool._busy
    for path in sorted(rt.pool.pool_dir.glob("slot-*")):
        assert pygit2.Repository(str(path)).head_is_detached, path  # no slot holds a branch


@pytest.mark.anyio
@pytest.mark.parametrize(("selection", "winner", "reviews"), [
    ("tests", 2, 0),           # verified, as many tests, smaller diff than 3
    ("smallest_diff", 2, 0),   # branch 1 is smaller but fails the tests
    ("review", 1, 3),          # the reviewer's favourite, tests or not
    ("best_score", 3, 2),      # 2 and 3 tie on the tests; the review decides between them
])
async def test_three_branches_one_winner_per_policy(
    tmp_path: Path, selection: str, winner: int, reviews: int,
) -> None:
    rt = speculating_runtime(tmp_path, selection)
    free_before = set(rt.free_slots)
    slot = min(rt.free_slots)
    rt.free_slots.discard(slot)  # what the dispatcher does
    result = await run_branches(rt, "u1", slot)
    rt.give_slot(slot)
    assert result.agent_ok

    unit = rt.store.get("units", "u1")
    assert unit["status"] == UnitStatus.QUEUED, unit["reason"]
    branches = {e["branch"]: e for e in events(rt, "speculation.branch")}
    assert sorted(branches) == [1, 2, 3]
    assert branches[1]["verified"] is False or selection == "review"
    if selection != "review":
        assert branches[1]["tests_failed"] == 1 and branches[2]["verified"] and branches[3]["verified"]
        assert branches[2]["tests_passed"] == branches[3]["tests_passed"] == 2
    assert len(events(rt, "speculation.reviewed")) == reviews
    (won,) = events(rt, "speculation.winner")
    assert won["branch"] == winner and sorted(won["losers"]) == sorted({1, 2, 3} - {winner})
    assert won["cost_usd"] == pytest.approx(0.75)
    # the winner's commit is the unit's branch, in the merge queue
    assert unit["head_commit"] == branches[winner]["head"] == won["head"]
    assert rt.repo.ref_head("refs/heads/mc/unit/u1") == won["head"]
    (merge,) = rt.store.rows("merges", "unit_id = ?", ("u1",))
    assert merge["branch"] == "mc/unit/u1" and merge["head_commit"] == won["head"]
    # every branch was an attempt of the unit, costed in the mission and the unit
    attempts = rt.store.rows("attempts", "unit_id = ? AND role = 'worker'", ("u1",))
    assert len(attempts) == 3
    assert sorted(a for b in branches.values() for a in b["attempt_ids"]) == \
        sorted(a["id"] for a in attempts)
    assert unit["cost_usd"] == pytest.approx(0.75)
    assert rt.store.get("missions", rt.mission_id)["total_cost_usd"] >= 0.75
    assert_pool_returned(rt, free_before)
    # the losers' work is kept on their branches, not merged
    for number, branch in branches.items():
        assert rt.repo.ref_head(f"refs/heads/{branch['ref']}") == branch["head"], number


@pytest.mark.anyio
async def test_the_winner_merges_through_the_queue(tmp_path: Path) -> None:
    rt = speculating_runtime(tmp_path, "tests")
    slot = min(rt.free_slots)
    rt.free_slots.discard(slot)
    await run_branches(rt, "u1", slot)
    rt.give_slot(slot)
    await rt.queue.run_once()
    assert rt.store.get("units", "u1")["status"] == UnitStatus.MERGED
    green = rt.repo.pygit[rt.repo.green_head()].peel(pygit2.Commit)
    names = {e.name for e in green.tree["app"]}
    assert "farewell.py" in names and "shout.py" not in names
    # what the mission report says of it
    from engine.report import build_report

    assert build_report(rt.store, rt.mission_id)["speculation"] == [{
        "unit_id": "u1", "attempt": 1, "selection": "tests", "winner": 2, "losers": [1, 3],
        "cost_usd": 0.75}]
    # what `mc --headless` prints of it
    from mc_tui.headless import describe

    lines = [describe(e) for e in rt.store.events_after(0) if e.kind.startswith("speculation.")]
    assert lines[0] == "[u1] 3 speculation branches (tests picks the winner)"
    assert "[u1] branch 2 wins; lost: 1, 3 ($0.75 for all)" in lines
    assert any(line.startswith("[u1] branch 1: verified=False passed=0 failed=1") for line in lines)


FAILING = '''
[[interaction]]
role = "worker"
when = { candidate = "1" }
actions = [{ type = "fail", error = "the model fell over", reason = "crash", status = "error" }]

[[interaction]]
role = "worker"
when = { candidate = "2" }
actions = [{ type = "text", text = "nothing to do" }]

[[interaction]]
role = "worker"
when = { candidate = "3" }
actions = [{ type = "fail", error = "gave up", reason = "crash", status = "error" }]
'''


@pytest.mark.anyio
async def test_no_branch_with_work_retries_the_unit_and_says_why(tmp_path: Path) -> None:
    rt = speculating_runtime(tmp_path, "tests", FAILING)
    free_before = set(rt.free_slots)
    slot = min(rt.free_slots)
    rt.free_slots.discard(slot)
    await run_branches(rt, "u1", slot)
    rt.give_slot(slot)
    unit = rt.store.get("units", "u1")
    assert unit["status"] == UnitStatus.READY  # a crash is retried, like one agent's
    assert "branch 1: the model fell over" in unit["reason"]
    assert "branch 2: no changes" in unit["reason"]
    (won,) = events(rt, "speculation.winner")
    assert won["branch"] is None and won["losers"] == [1, 2, 3]
    assert not rt.store.rows("merges")
    assert_pool_returned(rt, free_before)


def test_which_units_branch(tmp_path: Path) -> None:
    from engine.dispatch import run_unit

    rt = make_runtime(tmp_path, CASSETTE, "[speculation]\nenabled = true\nbranch_count = 3\n")
    assert runner_for(rt.config, {"uncertain": 1}) is run_branches
    assert runner_for(rt.config, {"uncertain": 0}) is run_unit
    assert runner_for(rt.config, {"uncertain": 1}, speculate=False) is run_unit  # degraded
    every = rt.config.model_copy(update={"speculation": rt.config.speculation.model_copy(
        update={"units": "all"})})
    assert runner_for(every, {"uncertain": 0}) is run_branches
    # the extra branches have slots of their own: (3 - 1) per worker, beyond fixup's
    assert len(rt.free_slots) == 2 + rt.config.green_branch.fixup_candidates + 2 * 2


@pytest.mark.anyio
async def test_a_restart_after_the_choice_takes_the_winner_on_without_branching_again(
    tmp_path: Path,
) -> None:
    rt = speculating_runtime(tmp_path, "tests")
    slot = min(rt.free_slots)
    rt.free_slots.discard(slot)
    real_submit = rt.queue.submit

    def killed(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt  # the process dies at the door of the queue

    rt.queue.submit = killed  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        await run_branches(rt, "u1", slot)
    rt.queue.submit = real_submit  # type: ignore[method-assign]
    (won,) = events(rt, "speculation.winner")
    # what adopting the mission does with a unit whose agent had finished
    rt.units.move("u1", UnitStatus.READY, resume_point="review", reason="restart")
    await run_branches(rt, "u1", slot)
    rt.give_slot(slot)
    unit = rt.store.get("units", "u1")
    assert unit["status"] == UnitStatus.QUEUED and unit["head_commit"] == won["head"]
    assert len(events(rt, "speculation.started")) == 1  # not branched again
    assert len(rt.store.rows("attempts", "role = 'worker'")) == 3


AUTH = CASSETTE.replace('''role = "worker"
when = { candidate = "2" }
cost_usd = 0.25
actions = [''', '''role = "worker"
when = { candidate = "2" }
cost_usd = 0.25
actions = [
  { type = "fail", error = "Invalid API key", reason = "auth", status = "error" },''', 1)


@pytest.mark.anyio
async def test_an_auth_failure_of_one_branch_stops_the_mission_and_frees_everything(
    tmp_path: Path,
) -> None:
    from engine.runtime import FatalAgentError

    assert AUTH != CASSETTE
    rt = speculating_runtime(tmp_path, "tests", AUTH)
    free_before = set(rt.free_slots)
    slot = min(rt.free_slots)
    rt.free_slots.discard(slot)
    with pytest.raises(FatalAgentError, match="not authenticated"):
        await run_branches(rt, "u1", slot)
    rt.give_slot(slot)
    assert rt.store.get("units", "u1")["status"] == UnitStatus.READY  # picked up after login
    assert not events(rt, "speculation.winner") and not rt.store.rows("merges")
    assert_pool_returned(rt, free_before)


LEAK = '''
[[interaction]]
role = "worker"
when = { candidate = "1" }
actions = [
  { type = "write", path = "app/tiny.py", content = "X = 1\\n" },
  { type = "run", command = "git add -f .env app/tiny.py && git -c user.name=a -c user.email=a@localhost commit -q -m leak" },
]

[[interaction]]
role = "worker"
actions = [
  { type = "write", path = "app/farewell.py", content = "def farewell(name):\\n    return 'see you ' + name\\n" },
  { type = "commit", message = "farewell" },
]
'''


@pytest.mark.anyio
async def test_a_branch_that_commits_a_secret_never_wins(tmp_path: Path) -> None:
    rt = make_runtime(tmp_path, LEAK, '[speculation]\nenabled = true\nbranch_count = 2\n'
                      'selection = "smallest_diff"\n[worktree]\ninclude = [".env"]\n')
    (rt.repo.path / ".gitignore").write_text(".env\n")
    (rt.repo.path / ".env").write_text("API_TOKEN=not-for-git\n")  # the user's, copied in
    add_unit(rt, "u1", UnitStatus.READY, uncertain=1)
    slot = min(rt.free_slots)
    rt.free_slots.discard(slot)
    await run_branches(rt, "u1", slot)
    rt.give_slot(slot)
    branches = {e["branch"]: e for e in events(rt, "speculation.branch")}
    assert ".env" in (branches[1]["problem"] or "") and branches[1]["head"]
    assert branches[1]["diff_lines"] <= branches[2]["diff_lines"]  # it would win a tie, yet
    (won,) = events(rt, "speculation.winner")
    assert won["branch"] == 2 and won["problem"] is None
    assert rt.store.get("units", "u1")["status"] == UnitStatus.QUEUED


@pytest.mark.anyio
async def test_the_gate_reuses_the_winners_review(tmp_path: Path) -> None:
    rt = make_runtime(tmp_path, CASSETTE, "[speculation]\nenabled = true\nbranch_count = 3\n"
                      'selection = "best_score"\n[review]\ngate_completion = true\n')
    add_unit(rt, "u1", UnitStatus.READY, uncertain=1)
    slot = min(rt.free_slots)
    rt.free_slots.discard(slot)
    await run_branches(rt, "u1", slot)
    rt.give_slot(slot)
    assert rt.store.get("units", "u1")["status"] == UnitStatus.QUEUED
    # two reviews for the choice (branches 2 and 3 tie on the tests), none more at the gate
    assert len(rt.store.rows("attempts", "role = 'reviewer'")) == 2
    (scored,) = events(rt, "review.scored")
    assert scored["passed"] and scored["feedback"] == "b3" and scored["score"] == 8.0


@pytest.mark.anyio
async def test_with_precheck_a_winner_failing_its_tests_goes_to_fixup_not_the_queue(
    tmp_path: Path,
) -> None:
    """selection = "review" picks branch 1, which breaks the tests: with precheck on, its own
    worktree's verification sends the unit to fixup (as run_unit does), never into a batch."""
    rt = make_runtime(tmp_path, CASSETTE, "[speculation]\nenabled = true\nbranch_count = 3\n"
                      'selection = "review"\n[target.verification]\nprecheck = true\n')
    add_unit(rt, "u1", UnitStatus.READY, uncertain=1)
    slot = min(rt.free_slots)
    rt.free_slots.discard(slot)
    result = await run_branches(rt, "u1", slot)
    rt.give_slot(slot)
    assert result.agent_ok
    (won,) = events(rt, "speculation.winner")
    assert won["branch"] == 1
    (checked,) = events(rt, "unit.prechecked")
    assert checked["accepted"] is False and checked["head"] == won["head"]
    assert rt.store.get("units", "u1")["status"] == UnitStatus.FIXUP
    assert rt.store.rows("merges", "unit_id = ?", ("u1",)) == []


@pytest.mark.anyio
async def test_branches_chosen_by_review_alone_are_not_reported_as_failing(tmp_path: Path) -> None:
    rt = speculating_runtime(tmp_path, "review")
    slot = min(rt.free_slots)
    rt.free_slots.discard(slot)
    await run_branches(rt, "u1", slot)
    rt.give_slot(slot)
    for branch in events(rt, "speculation.branch"):
        assert branch["verified"] is None and branch["tests_passed"] is None, branch
