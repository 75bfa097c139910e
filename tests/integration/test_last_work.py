"""The mission's last work skips its precheck (engine/checks.py ``last_work``), but not while a
branch that was not prechecked waits to be taken: the queue would batch the two. (Found by a
review; the test failed on the code before its fix.)"""
from __future__ import annotations

from pathlib import Path

from engine.checks import queue_verifies_at_once
from engine.dispatch import submit
from engine.models import UnitStatus
from tests.integration.mission_support import add_unit, commit_on_branch, make_runtime


def test_last_work_skips_while_an_unprechecked_branch_is_still_pending(tmp_path: Path) -> None:
    rt = make_runtime(tmp_path, "", "[target.verification]\nprecheck = true\n")
    rt.baseline_ready = None
    green = rt.repo.green_head()
    a = commit_on_branch(rt, "mc/unit/a", green, "a.txt", "a\n", "a")
    b = commit_on_branch(rt, "mc/unit/b", green, "b.txt", "b\n", "b")
    add_unit(rt, "a", UnitStatus.RUNNING, title="a", head_commit=a, base_commit=green)
    add_unit(rt, "b", UnitStatus.RUNNING, title="b", head_commit=None, base_commit=green)
    # a's agent is done, the queue idle: a skips its precheck (verifies at once)
    assert queue_verifies_at_once(rt, None)
    rt.prechecks_skipped.add("a")
    submit(rt, "a", "mc/unit/a", a)
    rt.prechecks_skipped.discard("a")  # run_unit's finally
    # b's agent is done before the loop starts the queue's run: a is pending, unverified
    rt.store.update("units", "b", head_commit=b)
    assert rt.queue.pending() == 1 and not rt.queue.verifies_at_once()
    skipped = queue_verifies_at_once(rt, None)
    submit(rt, "b", "mc/unit/b", b)
    batch = [i.unit_id for i in rt.queue._take()]
    assert not skipped, f"b skipped its precheck too; the queue's next batch: {batch}"
