"""Stacked branches (``[scheduler] stacked_branches``, engine/stacking.py) on real missions:
real temporary repos, scripted agents, the real merge queue and verification command.

A dependent unit starts on a *stack base* (mc/green + the heads of its dependencies still in
the merge queue) instead of waiting for them to merge; its merge row requires those heads,
so it reaches ``mc/green`` only after them, and it is withdrawn when they fail for good.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from engine.config import load_config
from engine.controller import Controller
from engine.gitops.repo import GREEN_REF
from engine.models import MergeStatus, UnitStatus
from engine.stacking import settle_stacks
from engine.store import Store
from tests.e2e.conftest import (
    AMBITION_OK,
    OBJECTIVE_MET,
    git,
    leftover_processes,
    make_target,
    plan_of,
    run_mc,
    worker_entry,
    write_config,
)
from tests.integration.mission_support import add_unit, commit_on_branch, make_runtime

PY = sys.executable
UNITTEST = f"{PY} -m unittest discover -s tests -t ."
DEP, DEPENDENT = "Add a farewell", "Use the farewell"
PLAN = plan_of((DEP, "app/bye.py"), (DEPENDENT, "app/bye_user.py", [DEP]))
BYE = "def bye():\\n    return 'bye'\\n"
# the dependent's work uses the dependency's: merged ahead of it, mc/green would not import
BYE_USER = "from app.bye import bye\\n\\n\\ndef bye_twice():\\n    return bye() * 2\\n"
BYE_USER_TEST = ("import unittest\\n\\nfrom app.bye_user import bye_twice\\n\\n\\n"
                 "class ByeUserTest(unittest.TestCase):\\n"
                 "    def test_twice(self):\\n        self.assertEqual(bye_twice(), 'byebye')\\n")
BROKEN_GREET = "def greet(name):\\n    return 'HEY ' + name\\n"
GOOD_GREET = "def greet(name):\\n    return f'hello {name}'\\n"

# The dependent's agent checks that its worktree already holds the dependency's work (it
# does on a stack base, and on mc/green once the dependency merged): `run` with check fails
# the session otherwise.
DEPENDENT_WORKER = f'''
[[interaction]]
role = "worker"
when = {{ unit_title = "{DEPENDENT}" }}
cost_usd = 0.1
actions = [
  {{ type = "run", command = "test -e app/bye.py", check = true }},
  {{ type = "write", path = "app/bye_user.py", content = "{BYE_USER}" }},
  {{ type = "write", path = "tests/test_bye_user.py", content = "{BYE_USER_TEST}" }},
  {{ type = "commit", message = "{DEPENDENT}" }},
]
'''


def dep_worker(greet: str | None = None) -> str:
    """The dependency's agent: adds app/bye.py (and, given ``greet``, rewrites app/greet.py)."""
    extra = (f'  {{ type = "write", path = "app/greet.py", content = "{greet}" }},\n'
             if greet else "")
    return f'''
[[interaction]]
role = "worker"
when = {{ unit_title = "{DEP}" }}
cost_usd = 0.1
actions = [
  {{ type = "write", path = "app/bye.py", content = "{BYE}" }},
{extra}  {{ type = "commit", message = "{DEP}" }},
]
'''


def fixup_entry(greet: str, times: int | None = None) -> str:
    limit = f"times = {times}\n" if times else ""
    return f'''
[[interaction]]
role = "fixup"
{limit}actions = [
  {{ type = "write", path = "app/greet.py", content = "{greet}" }},
  {{ type = "commit", message = "fixup greet" }},
]
'''


def settings(*, stacked: bool = True, depth: int = 0, sleep: float = 1.5, precheck: bool = False,
             batch_size: int = 8, slow_if: str = "", extra: str = "") -> str:
    """Config: stacking on/off, a verification that sleeps ``sleep`` s first (so that the
    dependency sits in the queue while its dependent could start; only when the shell test
    ``slow_if`` holds, given one), the precheck, the queue's depth and batch size."""
    pause = f"if {slow_if}; then sleep {sleep}; fi" if slow_if else f"sleep {sleep}"
    return (f"[scheduler]\nstacked_branches = {'true' if stacked else 'false'}\n"
            f"[target.verification]\ncommand = \"{pause}; {UNITTEST}\"\n"
            f"precheck = {'true' if precheck else 'false'}\nprecheck_when_queue_idle = true\n"
            f"[merge_queue]\nspeculative_depth = {depth}\nbatch_size = {batch_size}\n" + extra)


def run_mission(tmp_path: Path, cassette: str, extra: str) -> tuple[Store, Any, Path]:
    repo = make_target(tmp_path)
    config = load_config(write_config(tmp_path, PLAN + AMBITION_OK + OBJECTIVE_MET + cassette,
                                      extra))
    store = Store(config.db_path())
    outcome = anyio.run(Controller(config, store).run)
    return store, outcome, repo


def units_by_title(store: Store, mission_id: int) -> dict[str, dict[str, Any]]:
    return {u["title"]: u for u in store.units(mission_id) if u["is_leaf"]}


def status_events(store: Store, unit_id: str) -> list[tuple[int, str]]:
    """(event id, new status) of every ``unit.status`` event of ``unit_id``, in order."""
    rows = store.query("SELECT id, payload FROM events WHERE kind = 'unit.status' ORDER BY id")
    out = []
    for row in rows:
        payload = json.loads(row["payload"])
        if payload.get("id") == unit_id:
            out.append((row["id"], payload["to"]))
    return out


def first(events: list[tuple[int, str]], status: str) -> int:
    return next(i for i, to in events if to == status)


def green_merges(repo: Path) -> list[tuple[str, str]]:
    """(merge commit, merged branch head) of every first-parent merge on mc/green, oldest first."""
    lines = git(repo, "log", "--first-parent", "--reverse", "--merges", "--format=%H %P",
                "mc/green").splitlines()
    return [(parts[0], parts[2]) for parts in (line.split() for line in lines)]


def first_parent_commits(repo: Path) -> list[str]:
    return git(repo, "log", "--first-parent", "--reverse", "--format=%H", "mc/green").splitlines()


def reachable_from_green(repo: Path, commit: str) -> bool:
    return subprocess.run(["git", "merge-base", "--is-ancestor", commit, "mc/green"],
                          cwd=repo).returncode == 0


def suite_passes_at(repo: Path, commit: str, dest: Path) -> bool:
    """The target's unittest suite at ``commit`` (exported, no checkout touched) passes."""
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", commit], cwd=repo, capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return subprocess.run([PY, "-m", "unittest", "discover", "-s", "tests", "-t", "."],
                          cwd=dest, capture_output=True).returncode == 0


def branch_merge_order(repo: Path, units: dict[str, dict[str, Any]]) -> list[str]:
    """The titles of ``units`` in the order their final head's merge commit is on mc/green."""
    order = []
    for _, head in green_merges(repo):
        for title, unit in units.items():
            if unit["head_commit"] == head:
                order.append(title)
    return order


def diff_files(repo: Path, a: str, b: str) -> set[str]:
    return set(git(repo, "diff", "--name-only", a, b).splitlines())


# --------------------------------------------------------------------------- 1 and 5


@pytest.mark.parametrize("precheck", [False, True])
def test_a_dependent_starts_on_its_queued_dependency_and_merges_after_it(
    tmp_path: Path, precheck: bool,
) -> None:
    # with the precheck, the dependent's own worktree (the stack base + its change) is
    # verified before the queue, judged against the baseline of the mc/green under its stack
    # slow only for the dependency's work alone: its queue verification outlasts the
    # dependent's agent and precheck, so the dependent reaches the queue before it merges
    store, outcome, repo = run_mission(
        tmp_path, dep_worker() + DEPENDENT_WORKER,
        settings(sleep=2, precheck=precheck,
                 slow_if="[ -e app/bye.py ] && [ ! -e app/bye_user.py ]"))
    assert outcome.status == "completed", outcome.reason
    units = units_by_title(store, outcome.mission_id)
    dep, dependent = units[DEP], units[DEPENDENT]
    assert (dep["status"], dependent["status"]) == ("merged", "merged")
    # it started while the dependency was still in the queue, not after it merged
    dep_events, dependent_events = status_events(store, dep["id"]), status_events(store, dependent["id"])
    assert first(dependent_events, "running") < first(dep_events, "merged"), (dep_events,
                                                                             dependent_events)
    # its start is recorded: the dependency head it was stacked on, on which mc/green
    stacked = dependent["stacked_on"]
    assert stacked and stacked["heads"] == {dep["id"]: dep["head_commit"]}, stacked
    assert stacked["base"] == dependent["base_commit"]
    green_then = stacked["green"]
    assert not reachable_from_green_at(repo, dep["head_commit"], green_then)
    # the stack base is mc/green (then) with the dependency merged in: its own diff is its own
    assert git(repo, "show", f"{dependent['base_commit']}:app/bye.py")
    own = diff_files(repo, dependent["base_commit"], dependent["head_commit"])
    assert own == {"app/bye_user.py", "tests/test_bye_user.py"}, own
    # its merge row required the dependency head; one merge commit each, dependency first
    row = store.rows("merges", "unit_id = ?", (dependent["id"],))
    assert [r["requires"] for r in row] == [[dep["head_commit"]]]
    assert branch_merge_order(repo, units) == [DEP, DEPENDENT]
    assert suite_passes_at(repo, "mc/green", tmp_path / "green")
    checks = [json.loads(r["payload"]) for r in store.query(
        "SELECT payload FROM events WHERE kind = 'unit.prechecked' ORDER BY id")]
    assert [c["accepted"] for c in checks] == ([True, True] if precheck else [])
    assert not store.rows("units", "status = 'fixup'")
    store.close()


def reachable_from_green_at(repo: Path, commit: str, tip: str) -> bool:
    return subprocess.run(["git", "merge-base", "--is-ancestor", commit, tip],
                          cwd=repo).returncode == 0


def test_without_stacking_a_dependent_waits_for_its_dependency_to_merge(tmp_path: Path) -> None:
    store, outcome, repo = run_mission(
        tmp_path, dep_worker() + DEPENDENT_WORKER, settings(stacked=False, sleep=1.5))
    assert outcome.status == "completed", outcome.reason
    units = units_by_title(store, outcome.mission_id)
    dep, dependent = units[DEP], units[DEPENDENT]
    assert (dep["status"], dependent["status"]) == ("merged", "merged")
    dep_events, dependent_events = status_events(store, dep["id"]), status_events(store, dependent["id"])
    assert first(dependent_events, "running") > first(dep_events, "merged")
    assert dependent["stacked_on"] is None
    assert [r["requires"] for r in store.rows("merges", "unit_id = ?", (dependent["id"],))] == [[]]
    # it started on mc/green with the dependency in it
    assert reachable_from_green_at(repo, dep["head_commit"], dependent["base_commit"])
    assert branch_merge_order(repo, units) == [DEP, DEPENDENT]
    store.close()


# --------------------------------------------------------------------------- 2 and 3

FIXUP = "[green_branch]\nfixup_candidates = 1\nfixup_max_attempts = {attempts}\n"


def merge_rows(store: Store, unit_id: str) -> list[dict[str, Any]]:
    return store.rows("merges", "unit_id = ?", (unit_id,))


def promoted_tips(store: Store) -> list[str]:
    rows = store.query("SELECT payload FROM events WHERE kind = 'green.promoted' ORDER BY id")
    return [json.loads(r["payload"])["to"] for r in rows]


@pytest.mark.parametrize("depth", [0, 2])
def test_a_culprit_dependency_is_repaired_before_its_stacked_dependent_merges(
    tmp_path: Path, depth: int,
) -> None:
    # the dependency breaks greet(): the queue blames it, fixup repairs it; its dependent,
    # stacked on the broken head meanwhile, waits for the repair and merges after it
    store, outcome, repo = run_mission(
        tmp_path, dep_worker(BROKEN_GREET) + DEPENDENT_WORKER + fixup_entry(GOOD_GREET),
        settings(depth=depth, sleep=2, extra=FIXUP.format(attempts=2)))
    assert outcome.status == "completed", outcome.reason
    units = units_by_title(store, outcome.mission_id)
    dep, dependent = units[DEP], units[DEPENDENT]
    assert (dep["status"], dependent["status"]) == ("merged", "merged")
    dep_rows = merge_rows(store, dep["id"])
    broken_head = dep_rows[0]["head_commit"]
    assert dep_rows[0]["status"] == "failed", dep_rows  # the queue blamed it
    assert dep["head_commit"] != broken_head  # fixup's repair merged
    # the dependent was stacked on the broken head, and its merge required it
    assert dependent["stacked_on"]["heads"] == {dep["id"]: broken_head}
    assert all(r["requires"] == [broken_head] for r in merge_rows(store, dependent["id"]))
    assert first(status_events(store, dependent["id"]), "running") < first(
        status_events(store, dep["id"]), "fixup")
    # never merged ahead of its dependency: one merge commit each, dependency first
    assert branch_merge_order(repo, units) == [DEP, DEPENDENT]
    # innocent all along: never blamed for its dependency's break, never sent to fixup
    assert [r["status"] for r in merge_rows(store, dependent["id"])] == ["promoted"]
    assert "fixup" not in [to for _, to in status_events(store, dependent["id"])]
    check_green(store, repo, tmp_path)  # mc/green never held the broken greet()
    store.close()


def check_green(store: Store, repo: Path, tmp_path: Path) -> None:
    """Every tip mc/green was promoted to passed its verification; every commit on its
    first-parent history passes the suite and never held the broken greet()."""
    passed = {r["commit_sha"] for r in store.rows("verifications", "status = 'passed'")}
    tips = promoted_tips(store)
    assert tips and all(tip in passed for tip in tips), (tips, passed)
    for n, commit in enumerate(first_parent_commits(repo)):
        assert "HEY" not in git(repo, "show", f"{commit}:app/greet.py"), commit
        assert suite_passes_at(repo, commit, tmp_path / f"at-{n}"), commit


@pytest.mark.parametrize("depth", [0, 2])
def test_a_dependency_that_fails_for_good_blocks_and_withdraws_its_stacked_dependent(
    tmp_path: Path, depth: int,
) -> None:
    # one fixup round, whose candidate does not repair greet(): the dependency FAILS
    store, outcome, repo = run_mission(
        tmp_path, dep_worker(BROKEN_GREET) + DEPENDENT_WORKER
        + fixup_entry("def greet(name):\\n    return 'STILL ' + name\\n"),
        settings(depth=depth, sleep=2, extra=FIXUP.format(attempts=1) + "[rounds]\nmax_rounds = 1\n"))
    units = units_by_title(store, outcome.mission_id)
    dep, dependent = units[DEP], units[DEPENDENT]
    assert dep["status"] == "failed", dep
    assert dependent["status"] == "blocked", dependent
    assert dependent["stacked_on"] is None  # withdrawn: its stack is forgotten
    rows = merge_rows(store, dependent["id"])
    assert rows and rows[-1]["status"] == "withdrawn", rows
    assert "a dependency failed" in rows[-1]["reason"], rows[-1]["reason"]
    assert "a dependency failed" in dependent["reason"], dependent["reason"]
    # the dependent had been stacked on the dependency's work and submitted
    assert rows[-1]["requires"] == [merge_rows(store, dep["id"])[0]["head_commit"]]
    # neither the dependency's commits nor the dependent's are reachable from mc/green
    for unit in (dep, dependent):
        for row in merge_rows(store, unit["id"]):
            assert not reachable_from_green(repo, row["head_commit"]), (unit["title"], row)
    assert not store.rows("merges", "status = 'promoted'")
    assert suite_passes_at(repo, "mc/green", tmp_path / "green")
    store.close()


# --------------------------------------------------------------------------- 6: kill -9

SLOW_DEPENDENT_WORKER = DEPENDENT_WORKER.replace(
    '  { type = "run", command = "test -e app/bye.py", check = true },\n',
    '  { type = "run", command = "test -e app/bye.py", check = true },\n'
    '  { type = "sleep", seconds = 2 },\n')


def start_mission(config: Path) -> subprocess.Popen[bytes]:
    """``mc mission --no-ui --yes`` in its own process group (killed as a whole)."""
    log = open(config.parent / "mc.log", "wb")  # noqa: SIM115 - the child holds it
    try:
        return subprocess.Popen(
            [PY, "-m", "mc_tui", "mission", "--config", str(config), "--no-ui", "--yes"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
    finally:
        log.close()


def wait_until(db: Path, sql: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> bool:
    """Poll the mission's store until ``sql`` returns a row (False if mc ended first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if db.exists():
            try:
                with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
                    if conn.execute(sql).fetchone():
                        return True
            except sqlite3.Error:
                pass
        time.sleep(0.05)
    return False


# the dependent's merge row is queued and held: its requirement is the dependency head,
# which is neither in mc/green nor queued (it is being verified)
HELD = ("SELECT 1 FROM merges m JOIN units u ON u.id = m.unit_id WHERE m.status = 'queued' "
        f"AND m.requires != '[]' AND u.title = '{DEPENDENT}'")
# the dependent's merge row rides in a speculative run behind its dependency's candidate,
# which is not promoted yet (the queue takes a branch queued mid-run at once)
RIDING = ("SELECT 1 FROM merges m JOIN units u ON u.id = m.unit_id WHERE m.status IN "
          f"('merging', 'verifying') AND m.requires != '[]' AND u.title = '{DEPENDENT}' AND "
          f"EXISTS (SELECT 1 FROM units d WHERE d.title = '{DEP}' AND d.status != 'merged')")
# the dependent's agent runs on its stack base (its dependency not merged yet)
RUNNING = (f"SELECT 1 FROM units WHERE title = '{DEPENDENT}' AND status = 'running' "
           f"AND stacked_on IS NOT NULL AND EXISTS (SELECT 1 FROM units d WHERE d.title = "
           f"'{DEP}' AND d.status != 'merged')")


@pytest.mark.slow
@pytest.mark.parametrize(("point", "depth"), [("held", 0), ("running", 0), ("riding", 2)])
def test_kill_9_with_a_stacked_dependent_in_flight_resumes_without_double_merges(
    tmp_path: Path, point: str, depth: int,
) -> None:
    repo = make_target(tmp_path)
    config = write_config(
        tmp_path, PLAN + AMBITION_OK + OBJECTIVE_MET + dep_worker() + SLOW_DEPENDENT_WORKER,
        settings(sleep=2 if point == "running" else 4, depth=depth))
    db = load_config(config).db_path()
    proc = start_mission(config)
    try:
        reached = wait_until(db, {"held": HELD, "riding": RIDING, "running": RUNNING}[point],
                             proc)
        log = (config.parent / "mc.log").read_text(errors="replace")[-2000:]
        assert reached, f"never reached {point!r}; mc: {proc.poll()}\n{log}"
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    assert leftover_processes(tmp_path) == {}  # its agents and verifications died with it

    resumed = run_mc("mission", "--config", str(config), "--no-ui", "--yes", "--resume",
                     timeout=120)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-2000:]
    store = Store(db)
    missions = store.rows("missions")
    assert len(missions) == 1 and missions[0]["status"] == "completed", missions
    units = units_by_title(store, missions[0]["id"])
    assert {t: u["status"] for t, u in units.items()} == {DEP: "merged", DEPENDENT: "merged"}
    # each unit merged exactly once: one promoted merge row, one merge commit on mc/green
    promoted = [m["unit_id"] for m in store.rows("merges", "status = 'promoted'")]
    assert sorted(promoted) == sorted(u["id"] for u in units.values()), promoted
    assert branch_merge_order(repo, units) == [DEP, DEPENDENT]
    assert len(green_merges(repo)) == 2, green_merges(repo)
    for path, text in (("app/bye.py", "def bye"), ("app/bye_user.py", "def bye_twice")):
        assert git(repo, "show", f"mc/green:{path}").count(text) == 1
    # mc/green is verified and passes the suite; the user's checkout is untouched
    passed = {r["commit_sha"] for r in store.rows("verifications", "status = 'passed'")}
    assert git(repo, "rev-parse", "mc/green") in passed
    assert suite_passes_at(repo, "mc/green", tmp_path / "green")
    assert git(repo, "status", "--porcelain") == ""
    store.close()


# --------------------------------------------------------------------------- settle_stacks


def stacked_runtime(tmp_path: Path) -> tuple[Any, str, str, str]:
    """A prepared mission: unit ``dep`` whose head ``old`` is not in mc/green, and unit
    ``top`` QUEUED on a branch stacked on it (merge row requiring ``old``)."""
    rt = make_runtime(tmp_path, "", "[scheduler]\nstacked_branches = true\n")
    green0 = rt.repo.green_head()
    old = commit_on_branch(rt, "mc/unit/dep", green0, "app/bye.py", "X = 1\n", "dep")
    top = commit_on_branch(rt, "mc/unit/top", old, "app/top.py", "Y = 1\n", "top")
    add_unit(rt, "dep", UnitStatus.QUEUED, title=DEP, branch="mc/unit/dep", head_commit=old)
    add_unit(rt, "top", UnitStatus.QUEUED, title=DEPENDENT, branch="mc/unit/top",
             head_commit=top, dependencies=["dep"],
             stacked_on={"green": green0, "base": old, "heads": {"dep": old}})
    rt.queue.submit("dep", "mc/unit/dep", old)
    rt.queue.submit("top", "mc/unit/top", top, [old])
    return rt, green0, old, top


def test_settle_stacks_runs_a_dependent_again_when_its_dependency_merged_other_work(
    tmp_path: Path,
) -> None:
    rt, green0, old, _ = stacked_runtime(tmp_path)
    units = rt.units.units(rt.mission_id)
    assert rt.queue.pending() == 2 and settle_stacks(rt, units) == []  # dep still queued
    # the dependency is redone from scratch and merged: its old head never reaches mc/green
    dep_row = rt.store.rows("merges", "unit_id = 'dep'")[0]
    rt.store.update("merges", dep_row["id"], status=MergeStatus.SKIPPED.value)
    redo = commit_on_branch(rt, "mc/unit/dep", green0, "app/bye.py", "X = 2\n", "dep again")
    rt.repo.set_owned_ref(GREEN_REF, redo, "test: the redone dependency merged")
    rt.units.move("dep", UnitStatus.MERGED, head_commit=redo)
    assert rt.queue.pending() == 0 and [i.unit_id for i in rt.queue.held()] == ["top"]
    assert settle_stacks(rt, rt.units.units(rt.mission_id)) == ["top"]
    top = rt.store.get("units", "top")
    assert (top["status"], top["stacked_on"]) == ("ready", None)
    assert "merged other work" in top["reason"]
    assert rt.store.rows("merges", "unit_id = 'top'")[0]["status"] == "withdrawn"
    assert rt.queue.held() == [] and rt.queue.pending() == 0
    assert not rt.repo.is_ancestor(old, rt.repo.green_head())
    rt.store.close()


@pytest.mark.parametrize(("dep_status", "withdrawn"),
                         [("fixup", False), ("failed", True), ("cancelled", True)])
def test_settle_stacks_blocks_a_dependent_only_when_its_dependency_is_gone(
    tmp_path: Path, dep_status: str, withdrawn: bool,
) -> None:
    rt, _, old, _ = stacked_runtime(tmp_path)
    dep_row = rt.store.rows("merges", "unit_id = 'dep'")[0]
    rt.store.update("merges", dep_row["id"], status="failed")  # the queue blamed it
    rt.units.move("dep", UnitStatus.FIXUP)
    if dep_status != "fixup":
        rt.units.move("dep", UnitStatus(dep_status))
    assert [i.unit_id for i in rt.queue.held()] == ["top"]
    assert settle_stacks(rt, rt.units.units(rt.mission_id)) == (["top"] if withdrawn else [])
    top = rt.store.get("units", "top")
    row = rt.store.rows("merges", "unit_id = 'top'")[0]
    if withdrawn:
        assert (top["status"], row["status"]) == ("blocked", "withdrawn")
        assert "a dependency failed" in top["reason"]
    else:  # a repair may still merge (it keeps ``old`` as an ancestor): it waits
        assert (top["status"], row["status"]) == ("queued", "queued")
        assert top["stacked_on"]["heads"] == {"dep": old}
    rt.store.close()


# --------------------------------------------------------------------------- conflicting stack

PLAN_CONFLICT = plan_of(("Add A", "app/a.py"), ("Add B", "app/b.py"),
                        ("Add C", "app/c.py", ["Add A", "Add B"]))
RESOLVE_X = '''
[[interaction]]
role = "fixup"
actions = [
  { type = "write", path = "app/x.py", content = "X = 'AB'\\n" },
  { type = "commit", message = "A and B" },
]
'''


def test_a_dependent_whose_dependencies_conflict_waits_then_stacks_on_the_repair(
    tmp_path: Path,
) -> None:
    # A and B write the same file differently (different hints: no overlap dependency);
    # C needs both. One merge at a time: while the first verifies, the other is queued, so
    # C's stack (mc/green + A + B) conflicts: C goes back to PLANNED instead of starting.
    # The second then conflicts in the queue, fixup resolves it, C stacks on the repair.
    repo = make_target(tmp_path)
    cassette = (PLAN_CONFLICT + AMBITION_OK + OBJECTIVE_MET
                + worker_entry("Add A", "app/x.py", "X = 'A'\\n")
                + worker_entry("Add B", "app/x.py", "X = 'B'\\n")
                + worker_entry("Add C", "app/c.py", "C = 1\\n") + RESOLVE_X)
    config = load_config(write_config(tmp_path, cassette, settings(
        sleep=2, batch_size=1, extra="[green_branch]\nfixup_candidates = 1\n")))
    store = Store(config.db_path())
    outcome = anyio.run(Controller(config, store).run)
    assert outcome.status == "completed", outcome.reason
    units = units_by_title(store, outcome.mission_id)
    assert {t: u["status"] for t, u in units.items()} == dict.fromkeys(units, "merged")
    a, b, c = units["Add A"], units["Add B"], units["Add C"]
    moves = [to for _, to in status_events(store, c["id"])]
    assert moves[:3] == ["ready", "planned", "ready"], moves  # its stack was refused
    refusals = [json.loads(r["payload"]).get("reason") or "" for r in store.query(
        "SELECT payload FROM events WHERE kind = 'unit.status' AND unit_id = ? ORDER BY id",
        (c["id"],)) if json.loads(r["payload"])["to"] == "planned"]
    assert any("conflict" in reason for reason in refusals), refusals
    # whichever of A and B reached the queue second conflicted there and was repaired;
    # C started on that repaired head (the other was merged by then) and merged after both
    conflicted = [u for u in (a, b) if "conflict" in
                  [r["status"] for r in merge_rows(store, u["id"])]]
    assert len(conflicted) == 1, [merge_rows(store, u["id"]) for u in (a, b)]
    second = conflicted[0]
    first_in = a if second is b else b
    assert c["stacked_on"]["heads"] == {second["id"]: second["head_commit"]}, c["stacked_on"]
    assert [r["status"] for r in merge_rows(store, c["id"])] == ["promoted"]
    assert merge_rows(store, c["id"])[0]["requires"] == [second["head_commit"]]
    assert branch_merge_order(repo, units) == [first_in["title"], second["title"], "Add C"]
    assert a["stacked_on"] is None and b["stacked_on"] is None
    assert git(repo, "show", "mc/green:app/x.py") == "X = 'AB'"
    store.close()


@pytest.mark.slow
@pytest.mark.parametrize("stacked_on_resume", [True, False])  # off: settled all the same
def test_kill_9_while_held_then_the_dependency_fails_for_good(
    tmp_path: Path, stacked_on_resume: bool,
) -> None:
    # the dependency breaks greet() and its one fixup round does not repair it; the kill
    # comes while its dependent is held in the queue; the resumed run must withdraw it
    repo = make_target(tmp_path)
    config = write_config(
        tmp_path, PLAN + AMBITION_OK + OBJECTIVE_MET + dep_worker(BROKEN_GREET)
        + DEPENDENT_WORKER + fixup_entry("def greet(name):\\n    return 'STILL ' + name\\n"),
        settings(sleep=3, extra=FIXUP.format(attempts=1) + "[rounds]\nmax_rounds = 1\n"))
    # slow until the kill (so the dependent is held behind the dependency's verification),
    # then quick: the resumed run's few verifications take well under its deadline
    fast = tmp_path / "fast"
    text = config.read_text().replace("sleep 3;", f"[ -e '{fast}' ] || sleep 3;")
    config.write_text(text)
    db = load_config(config).db_path()
    proc = start_mission(config)
    try:
        assert wait_until(db, HELD, proc), (config.parent / "mc.log").read_text()[-2000:]
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=10)
    assert leftover_processes(tmp_path) == {}
    fast.touch()

    env = {**os.environ, "MC_SCHEDULER__STACKED_BRANCHES": str(stacked_on_resume).lower()}
    resumed = subprocess.Popen(
        [PY, "-m", "mc_tui", "mission", "--config", str(config), "--no-ui", "--yes", "--resume"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        start_new_session=True, env=env)
    try:
        resumed.wait(timeout=20)  # ~3 s of work: a verification, one fixup round
    except subprocess.TimeoutExpired:
        os.killpg(resumed.pid, signal.SIGKILL)
        resumed.wait(timeout=10)
        store = Store(db)
        state = {u["title"]: u["status"] for u in store.rows("units")}
        rows = [(m["unit_id"], m["status"]) for m in store.rows("merges")]
        store.close()
        pytest.fail(f"the resumed mission never ended: units {state}, merges {rows}")
    store = Store(db)
    units = units_by_title(store, 1)
    dep, dependent = units[DEP], units[DEPENDENT]
    assert (dep["status"], dependent["status"]) == ("failed", "blocked")
    rows = merge_rows(store, dependent["id"])
    assert [r["status"] for r in rows] == ["withdrawn"], rows
    for unit in (dep, dependent):
        for row in merge_rows(store, unit["id"]):
            assert not reachable_from_green(repo, row["head_commit"])
    assert store.rows("missions")[0]["status"] != "running"
    store.close()
