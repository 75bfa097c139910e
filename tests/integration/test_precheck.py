"""``[target.verification] precheck``: a unit whose own worktree fails the verification goes
straight to fixup and never into a merge-queue batch (real repo, real mission, scripted agents)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anyio

from engine.config import load_config
from engine.controller import Controller
from engine.runner import MissionOutcome
from engine.store import Store
from tests.e2e.conftest import (
    AMBITION_OK,
    OBJECTIVE_MET,
    make_target,
    plan_of,
    worker_entry,
    write_config,
)
from tests.integration.rerun_support import RESTORE_GREET, rerun_settings, shout_cassette

PLAN_TWO = plan_of(("Add a farewell", "app/bye.py"), ("Add a shout", "app/shout.py"))
CASSETTE = (
    PLAN_TWO + AMBITION_OK + OBJECTIVE_MET
    + worker_entry("Add a farewell", "app/bye.py", "def bye():\\n    return 'bye'\\n")
    # this one breaks greet(): test_greet fails in its own worktree already
    + worker_entry("Add a shout", "app/greet.py", "def greet(name):\\n    return 'HEY ' + name\\n")
    + '''
[[interaction]]
role = "fixup"
actions = [
  { type = "write", path = "app/greet.py", content = "def greet(name):\\n    return f'hello {name}'\\n" },
  { type = "write", path = "app/shout.py", content = "def shout():\\n    return 'HEY'\\n" },
  { type = "commit", message = "Restore greet, shout apart" },
]
'''
)
PRECHECK = ("[target.verification]\nprecheck = true\nprecheck_when_queue_idle = true\n"
            "[green_branch]\nfixup_candidates = 1\nfixup_max_attempts = 1\n")


def payloads(store: Store, kind: str) -> list[dict]:
    return [json.loads(r["payload"]) for r in store.query(
        "SELECT payload FROM events WHERE kind = ? ORDER BY id", (kind,))]


def test_a_unit_failing_its_precheck_goes_to_fixup_without_entering_the_queue(
    tmp_path: Path,
) -> None:
    make_target(tmp_path)
    config = load_config(write_config(tmp_path, CASSETTE, PRECHECK))
    store = Store(config.db_path())
    outcome = anyio.run(Controller(config, store).run)
    assert outcome.status == "completed", outcome.reason
    units = {u["title"]: u for u in store.units(outcome.mission_id)}
    assert {t: u["status"] for t, u in units.items()} == {
        "Add a farewell": "merged", "Add a shout": "merged"}
    checks = {(e["accepted"], e["status"]) for e in payloads(store, "unit.prechecked")}
    assert checks == {(True, "passed"), (False, "failed")}
    started = payloads(store, "fixup.started")
    assert len(started) == 1 and "test_greet" in started[0]["detail"]
    assert "before the queue" in started[0]["detail"]
    # the broken commit never reached the queue: no failed merge, no failed verification
    assert not store.rows("merges", "status IN ('failed', 'conflict')")
    assert not store.rows("verifications", "status = 'failed'")
    store.close()


def test_without_precheck_the_queue_finds_the_culprit(tmp_path: Path) -> None:
    make_target(tmp_path)
    config = load_config(write_config(tmp_path, CASSETTE, PRECHECK.replace("true", "false")))
    store = Store(config.db_path())
    outcome = anyio.run(Controller(config, store).run)
    assert outcome.status == "completed", outcome.reason
    assert not payloads(store, "unit.prechecked")
    assert len(store.rows("merges", "status = 'failed'")) == 1
    store.close()


def test_a_crash_during_the_precheck_keeps_the_finished_work(tmp_path: Path) -> None:
    # The unit's head is recorded before its precheck runs: a mission killed during it
    # takes that work on to review and the queue when it resumes, no agent runs again.
    from engine.mission import adopt_for_resume

    make_target(tmp_path)
    config = load_config(write_config(tmp_path, CASSETTE, PRECHECK))
    # instant on mc/green (the baseline), hangs in a unit's worktree that adds app/bye.py
    config.target.verification.command = "if [ -e app/bye.py ]; then sleep 60; fi; true"
    store = Store(config.db_path())
    controller = Controller(config, store)

    async def run_then_die() -> None:
        with anyio.move_on_after(4):
            await controller.run()

    anyio.run(run_then_die)
    unit = next(u for u in store.units(controller.mission_id) if u["title"] == "Add a farewell")
    assert unit["status"] == "running" and unit["head_commit"], unit
    adopt_for_resume(store, controller.mission_id)
    unit = store.get("units", unit["id"])
    assert (unit["status"], unit["resume_point"]) == ("ready", "review")
    store.close()



def test_a_precheck_does_not_hold_the_worker_slot(tmp_path: Path) -> None:
    # One worker, two independent units. A slot counts agents: once the first unit's agent
    # is done, the second one's starts while the first one's precheck runs (it used to wait
    # for the whole verification: the fleet benchmark's workers spent 1.5 s of every unit
    # holding a slot no agent used).
    make_target(tmp_path)
    cassette = (PLAN_TWO + AMBITION_OK + OBJECTIVE_MET
                + worker_entry("Add a farewell", "app/bye.py", "def bye():\\n    return 'bye'\\n")
                + worker_entry("Add a shout", "app/shout.py", "def shout():\\n    return 'HEY'\\n"))
    config = load_config(write_config(
        tmp_path, cassette, PRECHECK + "[scheduler.parallel]\nnum_workers = 1\n"))
    # slow with one unit's work (its precheck), instant on mc/green (the baseline)
    config.target.verification.command = (
        "if [ -e app/bye.py ] && [ -e app/shout.py ]; then true; "
        "elif [ -e app/bye.py ] || [ -e app/shout.py ]; then sleep 2; fi; true")
    store = Store(config.db_path())
    outcome = anyio.run(Controller(config, store).run)
    assert outcome.status == "completed", outcome.reason
    checks = store.query("SELECT ts, unit_id, payload FROM events WHERE kind = 'unit.prechecked' "
                         "ORDER BY id")
    assert len(checks) == 2
    first = checks[0]
    starts = {r["unit_id"]: r["started_at"] for r in store.query(
        "SELECT unit_id, started_at FROM attempts WHERE role = 'worker'")}
    other = next(u for u in starts if u != first["unit_id"])
    assert starts[other] < first["ts"] - 1.0, (starts, first["ts"])  # ran beside the precheck
    store.close()


PLAN_FOUR = plan_of(("Add a farewell", "app/bye.py"), ("Add a shout", "app/shout.py"),
                    ("Add a slow", "app/slow.py"), ("Add a last", "app/last.py"))

SLOW_WORKER = worker_entry("Add a slow", "app/slow.py", "X = 1\\n", sleep=4)


def test_a_slot_freed_for_a_precheck_is_never_freed_again_under_another_unit(tmp_path: Path) -> None:
    """One worker; the first unit's precheck outlasts the next unit's agent start: when that
    precheck ends, the slot (now another unit's) must not be handed out a second time, so no
    two worker sessions ever overlap (they did: a third agent started on the busy slot)."""
    make_target(tmp_path)
    cassette = (PLAN_FOUR + AMBITION_OK + OBJECTIVE_MET
                + worker_entry("Add a farewell", "app/bye.py", "def bye():\\n    return 'bye'\\n")
                + worker_entry("Add a shout", "app/shout.py", "def shout():\\n    return 'HEY'\\n")
                + SLOW_WORKER + worker_entry("Add a last", "app/last.py", "Y = 2\\n"))
    config = load_config(write_config(
        tmp_path, cassette, "[target.verification]\nprecheck = true\nprecheck_when_queue_idle = true\n[scheduler.parallel]\nnum_workers = 1\n"))
    # only the first unit's own worktree (app/bye.py alone) verifies slowly
    config.target.verification.command = (
        "if [ -e app/bye.py ] && [ ! -e app/shout.py ] && [ ! -e app/slow.py ] && "
        "[ ! -e app/last.py ]; then sleep 2.5; fi; true")
    store = Store(config.db_path())
    outcome = anyio.run(Controller(config, store).run)
    assert outcome.status == "completed"
    rows = store.query("SELECT u.title, a.started_at, a.ended_at FROM attempts a JOIN units u "
                       "ON u.id = a.unit_id WHERE a.role = 'worker' ORDER BY a.started_at")
    spans = [(r["started_at"], r["ended_at"], r["title"]) for r in rows]
    overlapping = [(a[2], b[2]) for i, a in enumerate(spans) for b in spans[i + 1:]
                   if b[0] < a[1] and a[0] < b[1]]
    assert len(spans) == 4 and not overlapping, overlapping


def skip_cassette(shout_sleep: float) -> str:
    """The farewell's agent takes 0.5 s (the baseline, which a judgement waits for, is
    recorded by then), the broken shout's ``shout_sleep``."""
    return (PLAN_TWO + AMBITION_OK + OBJECTIVE_MET
            + worker_entry("Add a farewell", "app/bye.py", "def bye():\\n    return 'bye'\\n",
                           sleep=0.5)
            + worker_entry("Add a shout", "app/greet.py",
                           "def greet(name):\\n    return 'HEY ' + name\\n", sleep=shout_sleep)
            + CASSETTE[CASSETTE.index("[[interaction]]\nrole = \"fixup\""):])


def test_no_precheck_when_the_merge_queue_verifies_the_branch_at_once(tmp_path: Path) -> None:
    # One worker, and the queue is idle each time an agent is done: the queue's verification
    # of the branch alone is the same check (blamed on it, then fixup), so no precheck runs
    # first and adds its time to the unit's path.
    make_target(tmp_path)
    config = load_config(write_config(
        tmp_path, skip_cassette(1.5),
        "[target.verification]\nprecheck = true\n[green_branch]\nfixup_candidates = 1\n"
        "fixup_max_attempts = 1\n[scheduler.parallel]\nnum_workers = 1\n"))
    store = Store(config.db_path())
    outcome = anyio.run(Controller(config, store).run)
    assert outcome.status == "completed", outcome.reason
    assert not payloads(store, "unit.prechecked")
    skipped = [e for e in payloads(store, "log") if "no precheck" in e["message"]]
    assert len(skipped) == 2, skipped
    # the broken shout was found by the queue, alone, and repaired
    assert len(store.rows("merges", "status = 'failed'")) == 1
    assert {u["status"] for u in store.rows("units", "is_leaf = 1")} == {"merged"}
    store.close()


def busy_queue_mission(tmp_path: Path, wave: bool) -> Store:
    """The farewell's agent is done first, with the queue idle: no precheck, the queue
    verifies it (1.5 s: slow only with the farewell in, one batch at a time). The broken
    shout's agent is done while that runs. With ``wave``, a third unit's agent (3 s) still
    runs then."""
    make_target(tmp_path)
    slow = f"if [ -f app/bye.py ]; then sleep 1.5; fi; {sys.executable} -m unittest discover -s tests -t ."
    cassette = skip_cassette(1.0)
    if wave:
        cassette = (plan_of(("Add a farewell", "app/bye.py"), ("Add a shout", "app/shout.py"),
                            ("Add a wave", "app/wave.py"))
                    + cassette[cassette.index(AMBITION_OK):]
                    + worker_entry("Add a wave", "app/wave.py", "def wave():\\n    return 'o/'\\n",
                                   sleep=3.0))
    config = load_config(write_config(
        tmp_path, cassette,
        f'[target.verification]\ncommand = "{slow}"\nprecheck = true\n'
        "[merge_queue]\nspeculative_depth = 0\n"
        "[scheduler.parallel]\nnum_workers = 3\n"
        "[green_branch]\nfixup_candidates = 1\nfixup_max_attempts = 1\n"))
    store = Store(config.db_path())
    outcome = anyio.run(Controller(config, store).run)
    assert outcome.status == "completed", outcome.reason
    return store


def test_the_precheck_runs_while_the_merge_queue_is_busy(tmp_path: Path) -> None:
    # the shout's precheck runs (the queue is busy, and the wave may queue behind it), fails,
    # and it goes to fixup without entering the queue
    store = busy_queue_mission(tmp_path, wave=True)
    checked = store.query("SELECT u.title FROM events e JOIN units u ON u.id = e.unit_id "
                          "WHERE e.kind = 'unit.prechecked'")
    # its first run and its re-run (which ran beside its fixup round's start)
    assert [r["title"] for r in checked][:2] == ["Add a shout", "Add a shout"]
    assert not store.rows("merges", "status IN ('failed', 'conflict')")
    store.close()


def test_the_missions_last_work_goes_to_the_queue_without_a_precheck(tmp_path: Path) -> None:
    # the shout is the last work (no other agent runs, nothing waits to start): its precheck
    # would protect no branch behind it, only delay it (engine/checks.py last_work). The
    # queue verifies it after the farewell, finds it broken, and it is repaired.
    store = busy_queue_mission(tmp_path, wave=False)
    assert not payloads(store, "unit.prechecked")
    skipped = [e["message"] for e in payloads(store, "log") if "no precheck" in e["message"]]
    assert len(skipped) == 2, skipped
    assert len(store.rows("merges", "status = 'failed'")) == 1
    assert {u["status"] for u in store.rows("units", "is_leaf = 1")} == {"merged"}
    store.close()


def test_a_unit_repaired_after_its_precheck_is_put_to_the_large_merge_gate(
    tmp_path: Path,
) -> None:
    # Its precheck sends it to fixup before its large-merge gate, and a fixup's winner passes
    # only the fixup gate: the large-merge gate is asked when the winner is delivered.
    make_target(tmp_path)
    config = load_config(write_config(
        tmp_path, CASSETTE, PRECHECK
        + '[hitl]\nenabled = true\ngates = ["large_merge"]\nlarge_merge_lines = 1\n'))
    store = Store(config.db_path())
    outcome = anyio.run(Controller(config, store, auto_approve=True).run)
    assert outcome.status == "completed", outcome.reason
    shout = store.rows("units", "title = 'Add a shout'")[0]
    assert shout["status"] == "merged"
    assert (False, "failed") in {(e["accepted"], e["status"])
                                 for e in payloads(store, "unit.prechecked")}
    asked = store.rows("approvals", "gate = 'large_merge' AND unit_id = ?", (shout["id"],))
    assert len(asked) == 1 and "after its fixup" in asked[0]["title"], asked
    store.close()


def rerun_mission(tmp_path: Path, flaky: bool, rounds: int = 1) -> tuple[Store, MissionOutcome]:
    """One unit ("Add a shout"), its precheck forced; the verification fails the first time
    it sees app/shout.py (``flaky``) or each time (the unit broke greet()); every run with
    the shout in takes 1 s, so its re-run is in flight when the fixup round starts. The
    fixup agent takes 4 s."""
    make_target(tmp_path)
    mark = tmp_path / "ran-once"
    unittest = f"{sys.executable} -m unittest discover -s tests -t ."
    command = (f"if [ -f app/shout.py ]; then sleep 1; if [ ! -e {mark} ]; then touch {mark}; "
               f"echo 'FAILED test_shout (first run)'; exit 1; fi; fi; {unittest}")
    cassette = shout_cassette(breaks_greet=not flaky,
                              fixup='  { type = "sleep", seconds = 4 },\n' + RESTORE_GREET)
    config = load_config(write_config(tmp_path, cassette, rerun_settings(command, rounds=rounds)))
    store = Store(config.db_path())
    return store, anyio.run(Controller(config, store).run)


def event_ids(store: Store, kind: str) -> list[tuple[int, dict]]:
    return [(r["id"], json.loads(r["payload"])) for r in store.query(
        "SELECT id, payload FROM events WHERE kind = ? ORDER BY id", (kind,))]


def merged_unit(tmp_path: Path, flaky: bool) -> tuple[Store, dict]:
    """The store and the one unit of :func:`rerun_mission`, which completed with it merged."""
    store, outcome = rerun_mission(tmp_path, flaky)
    assert outcome.status == "completed", outcome.reason
    unit = store.units(outcome.mission_id)[0]
    assert unit["status"] == "merged"
    return store, unit


def test_a_flaky_precheck_calls_off_the_fixup_round_started_beside_its_re_run(
    tmp_path: Path,
) -> None:
    store, unit = merged_unit(tmp_path, flaky=True)
    checks = [p for _, p in event_ids(store, "unit.prechecked")]
    assert [(c["accepted"], c.get("rerun_pending"), c.get("rerun")) for c in checks] == [
        (False, True, None), (True, None, True)]
    # the round had started (its agent was running) and was called off: no decision, the
    # unit's own commit went to the queue, the fixup agent was stopped well before its 4 s
    started, called_off = event_ids(store, "fixup.started"), event_ids(store, "fixup.called_off")
    assert len(started) == 1 and len(called_off) == 1
    assert not event_ids(store, "fixup.winner")
    fixups = store.rows("attempts", "role = 'fixup'")
    assert len(fixups) == 1 and fixups[0]["ended_at"] - fixups[0]["started_at"] < 3.5, fixups
    merges = store.rows("merges", "unit_id = ?", (unit["id"],))
    assert [(m["branch"], m["status"]) for m in merges] == [(unit["branch"], "promoted")]
    assert merges[0]["head_commit"] == checks[0]["head"]
    assert unit["fixup_rounds"] == 0
    store.close()


def test_a_real_failure_is_repaired_from_the_first_run_not_after_the_re_run(
    tmp_path: Path,
) -> None:
    store, unit = merged_unit(tmp_path, flaky=False)
    assert unit["fixup_rounds"] == 1
    checks = event_ids(store, "unit.prechecked")
    assert [(p["accepted"], p.get("rerun")) for _, p in checks] == [(False, None), (False, True)]
    (started_id, _), = event_ids(store, "fixup.started")
    assert checks[0][0] < started_id < checks[1][0]  # the round began during the re-run
    assert not event_ids(store, "fixup.called_off")
    (_, winner), = event_ids(store, "fixup.winner")
    assert winner["candidate"] == 1
    merges = store.rows("merges", "unit_id = ?", (unit["id"],))
    assert [m["status"] for m in merges] == ["promoted"] and "fixup" in merges[0]["branch"]
    store.close()


def test_with_no_fixup_round_left_a_real_failure_fails_after_its_re_run(tmp_path: Path) -> None:
    # no round to play beside the re-run: the unit waits for its verdict, then fails (its
    # rejected work never goes to the queue)
    store, outcome = rerun_mission(tmp_path, flaky=False, rounds=0)
    unit = store.units(outcome.mission_id)[0]
    assert unit["status"] == "failed" and "fixup attempts exhausted" in unit["reason"]
    assert not store.rows("merges", "unit_id = ?", (unit["id"],))
    checks = store.query("SELECT payload FROM events WHERE kind = 'unit.prechecked' AND "
                         "unit_id = ? ORDER BY id", (unit["id"],))
    assert [(p["accepted"], p.get("rerun")) for p in map(json.loads, (c["payload"] for c in checks))] == [
        (False, None), (False, True)]
    assert not store.rows("events", "kind = 'fixup.started' AND unit_id = ?", (unit["id"],))
    store.close()
