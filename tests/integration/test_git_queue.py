"""The merge queue on real repositories: batching, conflicts, bisection, promotion, journal."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import anyio
import pytest
from test_git_support import (
    add_unit,
    commit_on,
    green_history_merges,
    init_repo,
    open_store,
    tree_files,
)

from engine.gitops import GitError, GitRepo, MergeQueue
from engine.gitops.bisect import first_failing_prefix
from engine.ledger import UnitLedger
from engine.models import UnitStatus
from engine.store.db import Store

# Fails when any file named BROKEN* is in the tree; prints which one.
CHECK = 'for f in BROKEN*; do [ -e "$f" ] && { echo "tests failed: $f present"; exit 1; }; done; echo all good'


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Env:
    def __init__(self, tmp: Path, batch_size: int = 8, command: str = CHECK, timeout: float = 20):
        self.path = tmp / "target"
        self.base = init_repo(self.path, {"README.md": "hello\n", "shared.txt": "a\nb\nc\n"})
        self.repo = GitRepo(self.path)
        self.green0 = self.repo.ensure_green("main")
        self.store, self.mission = open_store(tmp / "state" / "mission.db")
        self.queue = MergeQueue(
            self.repo, self.store, mission_id=self.mission, verify_command=command,
            verify_timeout=timeout, batch_size=batch_size, verify_dir=tmp / "state" / "verify",
            units=UnitLedger(self.store),
        )

    def unit(self, uid: str, files: dict[str, str | None], base: str | None = None) -> int:
        """A unit branch mc/unit/<uid> from green (or ``base``) with ``files``; submitted."""
        head = commit_on(self.path, f"mc/unit/{uid}", files, f"unit {uid}",
                         parent=base or self.repo.green_head())
        add_unit(self.store, self.mission, uid)
        return self.queue.submit(uid, f"mc/unit/{uid}", head)

    def status(self, table: str, row_id: object) -> str:
        row = self.store.get(table, row_id)
        assert row is not None
        return row["status"]

    def events(self, kind: str) -> list[dict]:
        return [e.payload for e in self.store.events_after(0) if e.kind == kind]


def run(queue: MergeQueue):
    return anyio.run(queue.run_once)


def test_batch_that_passes_is_verified_once_and_promoted(tmp_path: Path) -> None:
    env = Env(tmp_path)
    ids = [env.unit(f"u{i}", {f"f{i}.txt": f"{i}\n"}) for i in range(4)]
    assert env.queue.pending() == 4
    out = run(env.queue)
    assert out.verifications == 1
    assert [i.merge_id for i in out.promoted] == ids
    assert out.green_before == env.green0 and out.green_after == env.repo.green_head()
    assert {f"f{i}.txt" for i in range(4)} <= tree_files(env.path, "mc/green")
    assert env.repo.ref_head("mc/working") == out.green_after
    for i, mid in enumerate(ids):
        assert env.status("merges", mid) == "promoted"
        unit = env.store.get("units", f"u{i}")
        assert unit["status"] == "merged"
        assert unit["head_commit"] == env.repo.ref_head(f"mc/unit/u{i}")
    assert len(green_history_merges(env.path)) == 4
    ver = env.store.rows("verifications")
    assert [v["status"] for v in ver] == ["passed"] and ver[0]["commit_sha"] == out.green_after
    assert "all good" in ver[0]["output"]
    promoted = env.events("green.promoted")
    assert promoted == [{"from": env.green0, "to": out.green_after, "units": ["u0", "u1", "u2", "u3"]}]
    assert len(env.events("verification.started")) == len(env.events("verification.finished")) == 1
    unit_moves = [(e["from"], e["to"]) for e in env.events("unit.status") if e["id"] == "u0"]
    assert unit_moves == [("queued", "merging"), ("merging", "verifying"), ("verifying", "merged")]
    assert env.queue.pending() == 0
    journal = [(r["step"], r["phase"]) for r in env.store.rows("queue_journal")]
    assert journal[0] == ("batch", "intent") and journal[-1] == ("batch", "done")
    assert ("promote", "intent") in journal and ("promote", "done") in journal


def test_conflict_is_reported_per_branch_and_does_not_block_others(tmp_path: Path) -> None:
    env = Env(tmp_path)
    a = env.unit("a", {"shared.txt": "a\nB-from-a\nc\n"})
    b = env.unit("b", {"shared.txt": "a\nB-from-b\nc\n", "b.txt": "b\n"})
    c = env.unit("c", {"c.txt": "c\n"})
    out = run(env.queue)
    assert [i.merge_id for i in out.promoted] == [a, c]
    assert [(i.merge_id, paths) for i, paths in out.conflicts] == [(b, ["shared.txt"])]
    assert env.status("merges", b) == "conflict"
    assert env.store.get("merges", b)["conflict_paths"] == ["shared.txt"]
    unit_b = env.store.get("units", "b")
    assert unit_b["status"] == "fixup" and "shared.txt" in unit_b["reason"]
    assert "b.txt" not in tree_files(env.path, "mc/green")
    assert env.repo.pygit.revparse_single("mc/green:shared.txt").data == b"a\nB-from-a\nc\n"
    assert out.verifications == 1


def test_bisection_finds_the_culprit_and_promotes_the_rest(tmp_path: Path) -> None:
    env = Env(tmp_path, batch_size=16)
    ids = [env.unit(f"u{i}", {f"f{i}.txt": f"{i}\n"} | ({"BROKEN": "x"} if i == 5 else {}))
           for i in range(16)]
    out = run(env.queue)
    assert out.verifications <= 1 + 2 * math.ceil(math.log2(16))
    assert [i.merge_id for i, _ in out.failed] == [ids[5]]
    assert "BROKEN present" in out.failed[0][1]
    assert sorted(i.merge_id for i in out.promoted) == sorted(set(ids) - {ids[5]})
    files = tree_files(env.path, "mc/green")
    assert "BROKEN" not in files and "f5.txt" not in files
    assert {f"f{i}.txt" for i in range(16) if i != 5} <= files
    assert env.status("merges", ids[5]) == "failed"
    culprit = env.store.get("units", "u5")
    assert culprit["status"] == "fixup" and "BROKEN present" in culprit["reason"]
    # mc/green only ever held commits that passed verification
    passed = {v["commit_sha"] for v in env.store.rows("verifications") if v["status"] == "passed"}
    for event in env.events("green.promoted"):
        assert event["to"] in passed
    assert env.repo.green_head() in passed
    # every good unit merged exactly once
    heads = green_history_merges(env.path)
    assert len(heads) == len(set(heads)) == 15


def test_two_culprits_and_a_conflict_with_a_culprit(tmp_path: Path) -> None:
    env = Env(tmp_path, batch_size=8)
    ids = [
        env.unit("ok0", {"ok0.txt": "0"}),
        env.unit("bad1", {"BROKEN1": "x", "shared.txt": "bad\n"}),
        env.unit("ok2", {"shared.txt": "a\ngood\nc\n"}),  # conflicts only with bad1
        env.unit("bad3", {"BROKEN3": "x"}),
        env.unit("ok4", {"ok4.txt": "4"}),
    ]
    out = run(env.queue)
    assert sorted(i.merge_id for i, _ in out.failed) == [ids[1], ids[3]]
    assert sorted(i.merge_id for i in out.promoted) == [ids[0], ids[2], ids[4]]
    assert out.conflicts == []
    assert env.repo.pygit.revparse_single("mc/green:shared.txt").data == b"a\ngood\nc\n"


def test_batch_size_one_is_the_serial_queue(tmp_path: Path) -> None:
    env = Env(tmp_path, batch_size=1)
    for i in range(3):
        env.unit(f"u{i}", {f"f{i}.txt": "x"} | ({"BROKEN": "x"} if i == 1 else {}))
    outcomes = []
    while env.queue.pending():
        outcomes.append(run(env.queue))
    # the failure is re-run once on the same commit before it blames anyone
    assert [o.verifications for o in outcomes] == [1, 2, 1]
    assert [len(o.promoted) for o in outcomes] == [1, 0, 1]
    assert [len(o.failed) for o in outcomes] == [0, 1, 0]
    assert len({v["batch_id"] for v in env.store.rows("verifications")}) == 3


def test_branch_already_in_green_is_not_merged_twice(tmp_path: Path) -> None:
    env = Env(tmp_path)
    first = env.unit("u1", {"f.txt": "x"})
    run(env.queue)
    green = env.repo.green_head()
    head = env.store.get("merges", first)["head_commit"]
    again = env.queue.submit(None, "mc/unit/u1", head)
    out = run(env.queue)
    assert env.status("merges", again) == "skipped"
    assert out.verifications == 0 and env.repo.green_head() == green
    assert green_history_merges(env.path).count(head) == 1


def test_verification_timeout_counts_as_failure_and_is_recorded(tmp_path: Path) -> None:
    env = Env(tmp_path, command="sleep 5", timeout=0.3)
    mid = env.unit("slow", {"s.txt": "s"})
    out = run(env.queue)
    assert [i.merge_id for i, _ in out.failed] == [mid]
    assert env.repo.green_head() == env.green0
    ver = env.store.rows("verifications")
    # re-run once before it is blamed (a flaky hang would pass then)
    assert [v["status"] for v in ver] == ["timeout", "timeout"] and "timed out" in ver[0]["output"]


def test_verification_output_is_bounded_in_the_store(tmp_path: Path) -> None:
    env = Env(tmp_path, command="yes line | head -c 200000; exit 1")
    env.queue.max_output_bytes = 4096
    env.unit("noisy", {"n.txt": "n"})
    run(env.queue)
    output = env.store.rows("verifications")[0]["output"]
    assert len(output.encode()) < 4096 + 200 and "omitted" in output


def test_verification_runs_in_the_verify_worktree_at_the_candidate(tmp_path: Path) -> None:
    env = Env(tmp_path, command="git rev-parse HEAD refs/heads/mc/working refs/heads/mc/green;"
                                " git status --porcelain | wc -l")
    env.unit("u", {"u.txt": "u"})
    out = run(env.queue)
    output = env.store.rows("verifications")[0]["output"].split()
    # during the run: HEAD and mc/working at the candidate, mc/green not moved yet
    assert output == [out.green_after, out.green_after, env.green0, "0"]
    assert (tmp_path / "state" / "verify" / "u.txt").exists()


def test_reconcile_fixes_rows_left_by_a_crash(tmp_path: Path) -> None:
    env = Env(tmp_path)
    promoted = env.unit("done", {"d.txt": "d"})
    run(env.queue)
    in_green = env.store.get("merges", promoted)["head_commit"]
    # Simulate a crash: one row mid-verification whose promotion reached the ref...
    env.store.set_status("merges", promoted, "verifying")
    env.store.update("units", "done", status="verifying")
    # ...one mid-merge that never got in, one verification still "running".
    lost = env.unit("lost", {"l.txt": "l"})
    env.store.set_status("merges", lost, "merging")
    UnitLedger(env.store).move_if_legal("lost", UnitStatus.MERGING)
    vid = env.store.insert("verifications", {"mission_id": env.mission, "commit_sha": in_green,
                                             "command": "x", "status": "running", "started_at": 0})
    env.repo.set_owned_ref("mc/working", in_green, "test")
    notes = env.queue.reconcile()
    assert env.status("merges", promoted) == "promoted"
    assert env.store.get("units", "done")["status"] == "merged"
    assert env.status("merges", lost) == "queued"
    assert env.store.get("units", "lost")["status"] == "queued"
    assert env.status("verifications", vid) == "error"
    assert env.repo.ref_head("mc/working") == env.repo.green_head()
    assert len(notes) >= 4
    # a row recorded promoted whose commit vanished from mc/green is queued again
    env.repo.set_owned_ref("mc/green", env.green0, "test: simulate lost promotion")
    env.queue.reconcile()
    assert env.status("merges", promoted) == "queued"
    out = run(env.queue)
    assert {i.merge_id for i in out.promoted} == {promoted, lost}


def test_a_store_without_mission_gets_a_standalone_mission(tmp_path: Path) -> None:
    path = tmp_path / "t"
    init_repo(path)
    repo = GitRepo(path)
    repo.ensure_green("main")
    store = Store(tmp_path / "db.sqlite")
    queue = MergeQueue(repo, store, mission_id=None, verify_command="true", verify_timeout=5,
                       batch_size=2, verify_dir=tmp_path / "v")
    head = commit_on(path, "feature", {"x": "x"}, "x", parent=repo.green_head())
    queue.submit(None, "feature", head)
    assert len(run(queue).promoted) == 1


def test_first_failing_prefix_uses_log2_checks() -> None:
    for n in (1, 2, 5, 16, 33):
        for culprit in range(1, n + 1):
            calls: list[int] = []

            async def passes(k: int, culprit: int = culprit, calls: list[int] = calls) -> bool:
                calls.append(k)
                return k < culprit

            good, bad = anyio.run(first_failing_prefix, n, passes)
            assert (good, bad) == (culprit - 1, culprit)
            assert len(calls) <= math.ceil(math.log2(n)) if n > 1 else not calls


def test_green_moved_by_someone_else_is_never_overwritten(tmp_path: Path) -> None:
    env = Env(tmp_path)
    other = commit_on(env.path, "elsewhere", {"other.txt": "o"}, "other", parent=env.green0)
    env.queue.verify_command = f"git update-ref refs/heads/mc/green {other}"
    mid = env.unit("u", {"u.txt": "u"})
    with pytest.raises(GitError, match="could not move refs/heads/mc/green"):
        run(env.queue)
    assert env.repo.green_head() == other  # the compare-and-swap refused to clobber it
    assert env.status("merges", mid) == "queued"  # nothing left in flight
    assert env.store.get("units", "u")["status"] == "queued"
    env.queue.verify_command = CHECK
    out = run(env.queue)
    assert [i.merge_id for i in out.promoted] == [mid]
    assert env.repo.is_ancestor(other, env.repo.green_head())
    assert any("merge queue:" in e["message"] for e in env.events("log"))


def test_a_verification_that_cannot_run_blames_nobody_and_three_in_a_row_raise(tmp_path: Path) -> None:
    env = Env(tmp_path)
    ids = [env.unit(f"u{i}", {f"f{i}.txt": "x"}) for i in range(2)]
    blocker = tmp_path / "state" / "verify"
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("a file where the verify worktree goes")  # the worktree cannot be made
    for _ in range(2):
        out = run(env.queue)
        assert out.promoted == [] and out.failed == [] and out.conflicts == []
        assert out.green_after == env.green0
        assert [env.status("merges", i) for i in ids] == ["queued", "queued"]
        assert {env.store.get("units", f"u{i}")["status"] for i in range(2)} == {"queued"}
    assert [v["status"] for v in env.store.rows("verifications")] == ["error", "error"]
    assert "could not run" in env.store.rows("verifications")[0]["output"]
    assert sum("could not run (2 of 3" in e["message"] for e in env.events("log")) == 1
    assert env.repo.ref_head("mc/working") == env.green0
    blocker.unlink()  # fixed: the next run verifies, promotes, and resets the count
    assert [i.merge_id for i in run(env.queue).promoted] == ids
    more = env.unit("u2", {"f2.txt": "x"})
    shutil.rmtree(blocker)
    blocker.write_text("broken again")
    run(env.queue)
    run(env.queue)  # two errors after a success: not yet fatal
    with pytest.raises(GitError, match="could not run 3 times in a row"):
        run(env.queue)
    assert env.status("merges", more) == "queued"
    assert env.store.get("units", "u2")["status"] == "queued"


def test_a_verification_error_during_bisection_blames_nobody(tmp_path: Path) -> None:
    env = Env(tmp_path)
    ids = [env.unit(f"u{i}", {f"f{i}.txt": "x"} | ({"BROKEN": "x"} if i == 2 else {}))
           for i in range(4)]
    real = env.queue.verifier._checkout
    calls: list[str] = []

    def flaky_checkout(commit: str, slot: int = 0) -> None:
        calls.append(commit)
        if len(calls) == 2:  # the first bisection step cannot even check out
            raise OSError("disk full")
        real(commit, slot)

    env.queue.verifier._checkout = flaky_checkout  # type: ignore[method-assign]
    out = run(env.queue)
    assert out.failed == [] and out.promoted == [] and out.green_after == env.green0
    assert [v["status"] for v in env.store.rows("verifications")] == ["failed", "error"]
    assert [env.status("merges", i) for i in ids] == ["queued"] * 4
    assert all(env.store.get("units", f"u{i}")["status"] == "queued" for i in range(4))
    out = run(env.queue)  # the checkout works again: the real culprit is found
    assert [i.merge_id for i, _ in out.failed] == [ids[2]]
    assert sorted(i.merge_id for i in out.promoted) == sorted(set(ids) - {ids[2]})
