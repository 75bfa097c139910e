"""Dispatch order on a real mission: with fewer workers than READY units, the unit others
wait for starts first (it is on their path), then the rest by age."""

from __future__ import annotations

from pathlib import Path

import anyio

from engine.config import load_config
from engine.controller import Controller
from engine.ledger import Unit
from engine.models import UnitStatus
from engine.pipeline.execute import waiting_on
from engine.store import Store
from tests.e2e.conftest import (
    AMBITION_OK,
    OBJECTIVE_MET,
    make_target,
    plan_of,
    worker_entry,
    write_config,
)

PLAN = plan_of(("Add a farewell", "app/bye.py"), ("Add a shout", "app/shout.py"),
               ("Test the shout", "app/shout_check.py", ["Add a shout"]))


def test_the_unit_others_wait_for_is_dispatched_first(tmp_path: Path) -> None:
    make_target(tmp_path)
    cassette = (PLAN + AMBITION_OK + OBJECTIVE_MET
                + worker_entry("Add a farewell", "app/bye.py", "X = 1\\n")
                + worker_entry("Add a shout", "app/shout.py", "Y = 1\\n")
                + worker_entry("Test the shout", "app/shout_check.py", "Z = 1\\n"))
    config = load_config(write_config(tmp_path, cassette, "[scheduler.parallel]\nnum_workers = 1\n"))
    store = Store(config.db_path())
    outcome = anyio.run(Controller(config, store).run)
    assert outcome.status == "completed", outcome.reason
    order = [r["title"] for r in store.query(
        "SELECT u.title FROM attempts a JOIN units u ON u.id = a.unit_id "
        "WHERE a.role = 'worker' ORDER BY a.started_at")]
    # by age alone the farewell (planned first) went first and the test of the shout waited
    assert order == ["Add a shout", "Add a farewell", "Test the shout"]
    store.close()


def test_waiting_on_counts_leaves_downstream_through_chains() -> None:
    def unit(uid: str, status: UnitStatus, deps: list[str] = []) -> Unit:  # noqa: B006
        return Unit(id=uid, mission_id=1, title=uid, status=status, dependencies=deps)

    units = [unit("a", UnitStatus.READY), unit("b", UnitStatus.READY),
             unit("c", UnitStatus.PLANNED, ["a"]), unit("d", UnitStatus.PLANNED, ["c", "a"]),
             unit("e", UnitStatus.RUNNING, ["b"])]  # started already: waits for nobody
    assert waiting_on(units) == {"a": 2, "c": 1}
