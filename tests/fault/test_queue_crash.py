"""Fault injection: SIGKILL the merge queue at each step, restart, check the three promises.

1. nothing is merged twice (each good unit enters mc/green as exactly one merge commit);
2. nothing promoted is lost (every promoted unit is in mc/green; green never goes back);
3. mc/green only ever held commits that passed verification (checked over its reflog).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pygit2
import pytest

from engine.gitops import GitRepo, MergeQueue
from engine.ledger import UnitLedger
from engine.store.db import Store

ROOT = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("queue_driver.py")
SIG = pygit2.Signature("Test", "test@example.com", 1_700_000_000, 0)
UNITS = {"u1": {"u1.txt": "1"}, "u2": {"u2.txt": "2"}, "u3": {"BROKEN": "x"}, "u4": {"u4.txt": "4"}}
GOOD = ("u1", "u2", "u4")


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "T", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "T",
           "GIT_COMMITTER_EMAIL": "t@e"}
    proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def commit_on(repo: pygit2.Repository, branch: str, parent: str, files: dict[str, str]) -> str:
    base = repo[pygit2.Oid(hex=parent)]
    index = pygit2.Index()
    index.read_tree(base.tree)
    for name, text in files.items():
        index.add(pygit2.IndexEntry(name, repo.create_blob(text.encode()), pygit2.enums.FileMode.BLOB))
    oid = repo.create_commit(f"refs/heads/{branch}", SIG, SIG, f"work on {branch}",
                             index.write_tree(repo), [base.id])
    return str(oid)


def setup(tmp: Path, slow_push: bool = False) -> tuple[Path, Path, Path, dict[str, str]]:
    remote = tmp / "remote.git"
    git(tmp, "init", "-q", "--bare", "-b", "main", str(remote))
    target = tmp / "target"
    target.mkdir()
    git(target, "init", "-q", "-b", "main")
    (target / "README.md").write_text("hello\n")
    git(target, "add", "README.md")
    git(target, "commit", "-q", "-m", "initial")
    git(target, "remote", "add", "origin", str(remote))
    git(target, "push", "-q", "origin", "main")
    if slow_push:
        hook = remote / "hooks" / "pre-receive"
        hook.write_text("#!/bin/sh\ncat >/dev/null\nsleep 0.6\n")
        hook.chmod(0o755)
    repo = GitRepo(target)
    green = repo.ensure_green("main")
    state = tmp / "state"
    store = Store(state / "mission.db")
    store.insert("missions", {"objective": "fault test", "status": "running", "started_at": time.time()})
    queue = MergeQueue(repo, store, mission_id=1, verify_command="true", verify_timeout=5,
                       batch_size=4, verify_dir=state / "verify", units=UnitLedger(store))
    heads: dict[str, str] = {}
    for uid, files in UNITS.items():
        heads[uid] = commit_on(repo.pygit, f"mc/unit/{uid}", green, files)
        now = time.time()
        store.insert("units", {"id": uid, "mission_id": 1, "title": uid, "status": "queued",
                               "created_at": now, "updated_at": now})
        queue.submit(uid, f"mc/unit/{uid}", heads[uid])
    store.close()
    return target, state, remote, heads


def drive(target: Path, state: Path, fault: str | None,
          speculative: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MC_FAULT", None)
    env.pop("MC_SPECULATIVE", None)
    if fault:
        env["MC_FAULT"] = fault
    if speculative:
        env["MC_SPECULATIVE"] = speculative
    return subprocess.run([sys.executable, str(DRIVER), str(target), str(state)], env=env,
                          capture_output=True, text=True, timeout=60, cwd=ROOT)


def green_reflog(target: Path) -> list[str]:
    return git(target, "log", "-g", "--format=%H", "refs/heads/mc/green").split()


def check_promises(target: Path, state: Path, remote: Path, heads: dict[str, str],
                   green_at_crash: str) -> None:
    repo = GitRepo(target)
    green = repo.green_head()
    store = Store(state / "mission.db")
    # 1. nothing merged twice: one merge commit per good unit, none for the culprit
    merged = [line.split()[1] for line in
              git(target, "log", "--merges", "--format=%P", "refs/heads/mc/green").splitlines()]
    for uid in GOOD:
        assert merged.count(heads[uid]) == 1, f"{uid} merged {merged.count(heads[uid])} times"
    assert heads["u3"] not in merged
    assert not (set(git(target, "ls-tree", "-r", "--name-only", green).split()) & {"BROKEN"})
    # 2. nothing promoted is lost
    assert repo.is_ancestor(green_at_crash, green)
    for row in store.rows("merges", "status IN ('promoted', 'skipped')"):
        assert repo.is_ancestor(row["head_commit"], green)
    units = {u["id"]: u for u in store.rows("units")}
    assert all(units[u]["status"] == "merged" and units[u]["head_commit"] == heads[u] for u in GOOD)
    assert units["u3"]["status"] == "fixup"
    statuses = {r["unit_id"]: r["status"] for r in store.rows("merges")}
    assert statuses["u3"] == "failed" and all(statuses[u] in ("promoted", "skipped") for u in GOOD)
    # 3. mc/green only ever held verified commits
    passed = {r["commit_sha"] for r in store.rows("verifications", "status = 'passed'")}
    base = git(target, "rev-parse", "refs/heads/main").strip()
    for sha in green_reflog(target):
        assert sha == base or sha in passed, f"mc/green once held unverified {sha[:10]}"
    assert not store.rows("verifications", "status = 'running'")
    # and the push completed on restart
    assert git(remote, "rev-parse", "refs/heads/main").strip() == green
    store.close()


def test_driver_without_faults_drains_the_queue(tmp_path: Path) -> None:
    target, state, remote, heads = setup(tmp_path)
    proc = drive(target, state, None)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.splitlines()[-1])
    assert result["push_ok"] and result["runs"] == 1
    check_promises(target, state, remote, heads, git(target, "rev-parse", "main").strip())
    store = Store(state / "mission.db")
    # full batch and its re-run, two bisection steps, the culprit's prefix re-run, the rest
    assert len(store.rows("verifications")) == 6


FAULTS = {
    "after_merge": ("merge:done:1", False),
    "during_verification": ("verify:intent:1:0.1", False),
    "during_bisection": ("verify:intent:3:0.1", False),
    "after_verification_before_promotion": ("promote:intent:1", False),
    "after_green_moved_before_rows": ("promote:done:1", False),
    "after_culprit_before_rest": ("culprit:done:1", False),
    "after_second_promotion": ("promote:done:2", False),
    "during_push": ("push:intent:1:0.25", True),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FAULTS))
def test_sigkill_at_each_step_then_restart_keeps_the_promises(tmp_path: Path, name: str) -> None:
    fault, slow_push = FAULTS[name]
    target, state, remote, heads = setup(tmp_path, slow_push=slow_push)
    crashed = drive(target, state, fault)
    assert crashed.returncode == -signal.SIGKILL, (crashed.returncode, crashed.stderr)
    green_at_crash = GitRepo(target).green_head()
    if slow_push:  # the orphaned `git push` carries on; let it finish before restarting
        deadline = time.monotonic() + 10
        while git(remote, "rev-parse", "main").strip() != green_at_crash:
            assert time.monotonic() < deadline, "the interrupted push never completed"
            time.sleep(0.05)
    time.sleep(0.2)  # an orphaned verification command ends (it only sleeps 0.2 s)
    restarted = drive(target, state, None)
    assert restarted.returncode == 0, restarted.stderr
    result = json.loads(restarted.stdout.splitlines()[-1])
    assert result["push_ok"], result["push_output"]
    check_promises(target, state, remote, heads, green_at_crash)
    if name == "during_verification":
        store = Store(state / "mission.db")
        assert store.rows("verifications", "status = 'error'")  # the interrupted run, recorded
        assert any("interrupted" in n for n in result["notes"])
    if name == "during_push":
        assert any("push of" in n and "interrupted" in n for n in result["notes"])


def test_speculative_driver_without_faults_drains_the_queue(tmp_path: Path) -> None:
    target, state, remote, heads = setup(tmp_path)
    proc = drive(target, state, None, "1:2:2")
    assert proc.returncode == 0, proc.stderr
    check_promises(target, state, remote, heads, git(target, "rev-parse", "main").strip())
    store = Store(state / "mission.db")
    journal = [(r["step"], r["phase"]) for r in store.rows("queue_journal")]
    # the states the kill points below cut into
    assert ("speculate", "suspect") in journal and ("discard", "done") in journal
    assert store.rows("verifications", "status = 'cancelled'")
    store.close()


# Kill points inside the speculative states ("batch:depth:slots" of the driver's queue).
# batch 1, depth 2: u1 and u2 verify at once, u3 on u2 and u4 on u3 next; u3 fails at once,
# u4's run is discarded, u3 becomes the suspect: its re-run and u4 rebuilt on u2 run at once.
# batch 2, depth 1: [u1 u2] and [u3 u4] at once; the second is split.
SPECULATIVE_FAULTS = {
    "during_two_parallel_verifications": ("verify:intent:2:0.1", "1:2:2"),
    "after_the_head_promoted_tail_still_verifying": ("promote:done:1", "1:2:2"),
    "after_a_discard_of_a_candidate_built_on_the_culprit": ("discard:done:1", "1:2:2"),
    "during_the_suspect_re_run_and_the_rebuilt_tail": ("speculate:suspect:1:0.1", "1:2:2"),
    "after_the_culprit_before_the_rebuilt_tail_passed": ("culprit:done:1", "1:2:2"),
    "after_a_split_of_a_failed_speculative_batch": ("speculate:split:1", "2:1:2"),
    "during_the_split_verification": ("speculate:split:1:0.1", "2:1:2"),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SPECULATIVE_FAULTS))
def test_sigkill_in_each_speculative_state_then_restart_keeps_the_promises(
        tmp_path: Path, name: str) -> None:
    fault, speculative = SPECULATIVE_FAULTS[name]
    target, state, remote, heads = setup(tmp_path)
    crashed = drive(target, state, fault, speculative)
    assert crashed.returncode == -signal.SIGKILL, (crashed.returncode, crashed.stderr)
    green_at_crash = GitRepo(target).green_head()
    time.sleep(0.5)  # orphaned verification commands end (SIGTERM from their supervisor)
    restarted = drive(target, state, None, speculative)  # speculative candidates rebuilt
    assert restarted.returncode == 0, restarted.stderr
    result = json.loads(restarted.stdout.splitlines()[-1])
    assert result["push_ok"], result["push_output"]
    check_promises(target, state, remote, heads, green_at_crash)
