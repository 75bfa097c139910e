"""Stacked branches with the precheck on (engine/stacking.py: ``stackable``, ``unverified``;
engine/dispatch.py: ``precheck_passed``), on real missions: real temporary repos, scripted
agents, the real precheck, merge queue and verification command.

A dependent starts on its dependency's work as soon as that dependency's agent is done, while
its precheck still runs. A failing precheck of the dependent is *inconclusive* while the
dependency's stacked-on head is not known to pass (its own precheck failed, or has not
ended): the dependent is not sent to fixup, it goes on to the queue, held until the repaired
dependency merges. A dependency whose precheck passed at that head excuses nothing: the
dependent's own break sends it to fixup.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio

from engine.config import load_config
from engine.controller import Controller
from engine.store import Store
from tests.e2e.conftest import AMBITION_OK, OBJECTIVE_MET, git, make_target, write_config
from tests.integration.test_stacked_branches import (
    BROKEN_GREET,
    DEP,
    DEPENDENT,
    DEPENDENT_WORKER,
    GOOD_GREET,
    PLAN,
    UNITTEST,
    branch_merge_order,
    check_green,
    dep_worker,
    first,
    fixup_entry,
    merge_rows,
    status_events,
    units_by_title,
)

# the dependent's agent also breaks greet(): its own fault, whatever it was stacked on
BREAKING_DEPENDENT_WORKER = DEPENDENT_WORKER.replace(
    f'  {{ type = "commit", message = "{DEPENDENT}" }},\n',
    f'  {{ type = "write", path = "app/greet.py", content = "{BROKEN_GREET}" }},\n'
    f'  {{ type = "commit", message = "{DEPENDENT}" }},\n')
assert BREAKING_DEPENDENT_WORKER != DEPENDENT_WORKER


def config_text(command: str) -> str:
    """Precheck and stacking on, no precheck re-run, one fixup candidate."""
    return (f"[scheduler]\nstacked_branches = true\n"
            f"[target.verification]\ncommand = '{command}'\nprecheck = true\nprecheck_when_queue_idle = true\nflaky_reruns = 0\n"
            "[merge_queue]\nspeculative_depth = 0\n"
            "[green_branch]\nfixup_candidates = 1\nfixup_max_attempts = 2\n")


def run_mission(tmp_path: Path, cassette: str, command: str) -> tuple[Store, Any, Path]:
    repo = make_target(tmp_path)
    config = load_config(write_config(tmp_path, PLAN + AMBITION_OK + OBJECTIVE_MET + cassette,
                                      config_text(command)))
    store = Store(config.db_path())
    outcome = anyio.run(Controller(config, store).run)
    return store, outcome, repo


def events(store: Store, kind: str, unit_id: str) -> list[tuple[int, dict[str, Any]]]:
    """(event id, payload) of the ``kind`` events of ``unit_id``, in order."""
    rows = store.query("SELECT id, payload FROM events WHERE kind = ? AND unit_id = ? "
                       "ORDER BY id", (kind, unit_id))
    return [(r["id"], json.loads(r["payload"])) for r in rows]


def test_a_dependent_stacked_on_a_dependency_failing_its_precheck_is_not_blamed(
    tmp_path: Path,
) -> None:
    # the dependency breaks greet(): its precheck fails (2 s), fixup repairs it. Its
    # dependent starts on the broken head while that precheck runs; its own precheck fails
    # on the dependency's break: inconclusive, so it goes to the queue, held there until the
    # repaired dependency merges, and merges after it
    store, outcome, repo = run_mission(
        tmp_path, dep_worker(BROKEN_GREET) + DEPENDENT_WORKER + fixup_entry(GOOD_GREET),
        f"sleep 2; {UNITTEST}")
    assert outcome.status == "completed", outcome.reason
    units = units_by_title(store, outcome.mission_id)
    dep, dependent = units[DEP], units[DEPENDENT]
    assert (dep["status"], dependent["status"]) == ("merged", "merged")

    # the dependency's precheck failed on its own break (nothing stacked under it) -> fixup
    dep_checks = events(store, "unit.prechecked", dep["id"])
    assert dep_checks, "the dependency was never prechecked"
    dep_check_id, dep_check = dep_checks[0]
    broken_head = dep_check["head"]
    assert (dep_check["accepted"], dep_check["inconclusive"]) == (False, False), dep_check
    assert "fixup" in [to for _, to in status_events(store, dep["id"])]
    assert dep["head_commit"] != broken_head  # the repair merged
    assert git(repo, "merge-base", "--is-ancestor", broken_head, dep["head_commit"]) == ""

    # the dependent started on the broken head while the dependency's precheck still ran
    dependent_moves = status_events(store, dependent["id"])
    assert first(dependent_moves, "running") < dep_check_id, (dependent_moves, dep_checks)
    assert dependent["stacked_on"]["heads"] == {dep["id"]: broken_head}, dependent["stacked_on"]

    # its precheck failed, but inconclusively: accepted, never sent to fixup
    (_, check), = events(store, "unit.prechecked", dependent["id"])
    assert check["status"] == "failed", check
    assert (check["accepted"], check["inconclusive"]) == (True, True), check
    assert check["note"].startswith("inconclusive"), check["note"]
    assert DEP in check["note"], check["note"]
    assert "fixup" not in [to for _, to in dependent_moves], dependent_moves
    assert not events(store, "fixup.started", dependent["id"])

    # held on the broken head in the queue, merged once, after the repaired dependency
    rows = merge_rows(store, dependent["id"])
    assert [(r["status"], r["requires"]) for r in rows] == [("promoted", [broken_head])], rows
    assert first(dependent_moves, "queued") < first(status_events(store, dep["id"]), "merged")
    assert branch_merge_order(repo, units) == [DEP, DEPENDENT]
    check_green(store, repo, tmp_path)
    store.close()


def test_a_dependent_breaking_a_test_on_a_dependency_that_passed_its_precheck_goes_to_fixup(
    tmp_path: Path,
) -> None:
    # the dependency is fine and its precheck passes at the head the dependent is stacked
    # on; the dependent breaks greet() itself: its failing precheck is conclusive -> fixup.
    # Its precheck is 1 s slower (so the dependency's has ended), the queue's 1 s slower (so
    # the dependency is not merged yet when it is judged: the passing precheck decides)
    slow_dependent = "if [ -e app/bye_user.py ]; then sleep 1; fi"
    slow_queue = 'case "$PWD" in */verify|*/verify-*) sleep 1;; esac'
    store, outcome, repo = run_mission(
        tmp_path, dep_worker() + BREAKING_DEPENDENT_WORKER + fixup_entry(GOOD_GREET),
        f"sleep 2; {slow_dependent}; {slow_queue}; {UNITTEST}")
    assert outcome.status == "completed", outcome.reason
    units = units_by_title(store, outcome.mission_id)
    dep, dependent = units[DEP], units[DEPENDENT]
    assert (dep["status"], dependent["status"]) == ("merged", "merged")

    (dep_check_id, dep_check), = events(store, "unit.prechecked", dep["id"])
    assert (dep_check["accepted"], dep_check["status"]) == (True, "passed"), dep_check
    head = dep_check["head"]
    dependent_moves = status_events(store, dependent["id"])
    assert first(dependent_moves, "running") < dep_check_id, dependent_moves
    assert dependent["stacked_on"]["heads"] == {dep["id"]: head}, dependent["stacked_on"]

    # judged while the dependency was stacked on but not merged: its passing precheck at
    # that very head makes the dependent's failure its own
    (check_id, check), = events(store, "unit.prechecked", dependent["id"])[:1]
    assert dep_check_id < check_id < first(status_events(store, dep["id"]), "merged")
    assert check["status"] == "failed", check
    assert (check["accepted"], check["inconclusive"]) == (False, False), check
    assert not (check["note"] or "").startswith("inconclusive"), check
    # to fixup straight from its precheck, never blamed by (nor entering) the queue broken
    assert "fixup" in [to for _, to in dependent_moves], dependent_moves
    started = events(store, "fixup.started", dependent["id"])
    assert started and "before the queue" in started[0][1]["detail"], started
    assert not events(store, "fixup.started", dep["id"])
    assert "failed" not in [r["status"] for r in merge_rows(store, dependent["id"])]
    assert not store.rows("merges", "status IN ('failed', 'conflict')")
    assert branch_merge_order(repo, units) == [DEP, DEPENDENT]
    check_green(store, repo, tmp_path)
    store.close()
