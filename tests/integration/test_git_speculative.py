"""The speculative merge queue on real repositories: batches verified in parallel, each on
the candidate ahead; failures discard what was built on them; promotion in queue order."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
from test_git_support import (
    add_unit,
    commit_on,
    git,
    green_history_merges,
    init_repo,
    open_store,
    tree_files,
)

from engine.gitops import GitRepo, MergeQueue
from engine.ledger import UnitLedger

# Fails when any file named BROKEN* is in the tree. A tree holding SLOW sleeps the first
# time only (it writes its pids first), so a test can watch that run being discarded.
CHECK = ('sleep 0.1; if [ -e SLOW ] && [ ! -e "$MARK/slow-pids" ]; then '
         'sleep 30 & echo "$$ $!" > "$MARK/slow-pids"; wait; fi; '
         'for f in BROKEN*; do [ -e "$f" ] && { echo "tests failed: $f present"; exit 1; }; done; '
         'echo all good')
# The same, but a tree with BROKEN fails only once the SLOW run has started (so that run is
# certainly in flight when what it was built on fails).
CHECK_AFTER_SLOW = ('if [ -e BROKEN ] && [ ! -e SLOW ]; then for i in $(seq 100); do [ -e "$MARK/slow-pids" ] && break; '
                    'sleep 0.05; done; fi; ' + CHECK)


class Env:
    def __init__(self, tmp: Path, *, batch_size: int = 2, depth: int = 1, slots: int = 2,
                 flaky_reruns: int = 1, command: str = CHECK) -> None:
        self.tmp = tmp
        self.path = tmp / "target"
        init_repo(self.path, {"README.md": "hello\n", "shared.txt": "a\nb\nc\n"})
        self.repo = GitRepo(self.path)
        self.green0 = self.repo.ensure_green("main")
        self.store, self.mission = open_store(tmp / "state" / "mission.db")
        (tmp / "mark").mkdir()
        os.environ["MARK"] = str(tmp / "mark")
        self.queue = MergeQueue(
            self.repo, self.store, mission_id=self.mission, verify_command=command,
            verify_timeout=20, batch_size=batch_size, verify_dir=tmp / "state" / "verify",
            units=UnitLedger(self.store), flaky_reruns=flaky_reruns,
            speculative_depth=depth, verify_slots=slots,
        )

    def unit(self, uid: str, files: dict[str, str | None]) -> int:
        head = commit_on(self.path, f"mc/unit/{uid}", files, f"unit {uid}", parent=self.green0)
        add_unit(self.store, self.mission, uid)
        return self.queue.submit(uid, f"mc/unit/{uid}", head)

    def drain(self) -> list:
        outcomes = []
        while self.queue.pending():
            outcomes.append(anyio.run(self.queue.run_once))
        return outcomes

    def status(self, merge_id: int) -> str:
        row = self.store.get("merges", merge_id)
        assert row is not None
        return row["status"]

    def events(self, kind: str) -> list[dict]:
        return [e.payload for e in self.store.events_after(0) if e.kind == kind]

    def check_green_only_held_passed_commits(self) -> None:
        passed = {v["commit_sha"] for v in self.store.rows("verifications", "status = 'passed'")}
        reflog = git(self.path, "log", "-g", "--format=%H", "refs/heads/mc/green").split()
        for sha in reflog:
            assert sha == self.green0 or sha in passed, f"mc/green once held unverified {sha[:10]}"
        assert "BROKEN" not in " ".join(tree_files(self.path, "mc/green"))
        assert not self.store.rows("verifications", "status = 'running'")
        heads = green_history_merges(self.path)
        assert len(heads) == len(set(heads)), "a branch was merged twice"


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper does not count)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def overlapped(rows: list[dict]) -> bool:
    """Two verifications ran at the same time."""
    spans = sorted((r["started_at"], r["ended_at"]) for r in rows if r["ended_at"])
    return any(b[0] < a[1] for a, b in zip(spans, spans[1:], strict=False))


def test_speculative_batches_verify_in_parallel_and_promote_in_order(tmp_path: Path) -> None:
    env = Env(tmp_path)
    ids = [env.unit(f"u{i}", {f"f{i}.txt": f"{i}\n"}) for i in range(4)]
    out = anyio.run(env.queue.run_once)
    assert out.verifications == 2 and out.discarded == 0
    assert [i.merge_id for i in out.promoted] == ids
    rows = env.store.rows("verifications")
    assert len(rows) == 2 and overlapped(rows)
    # two verify worktrees, each at the candidate it verified
    assert (tmp_path / "state" / "verify").is_dir() and (tmp_path / "state" / "verify-1").is_dir()
    promotions = env.events("green.promoted")
    assert [p["units"] for p in promotions] == [["u0", "u1"], ["u2", "u3"]]
    assert promotions[0]["to"] == promotions[1]["from"]  # batch 1 was built on batch 0
    assert env.repo.ref_head("mc/working") == env.repo.green_head() == promotions[1]["to"]
    env.check_green_only_held_passed_commits()
    assert all(env.store.get("units", f"u{i}")["status"] == "merged" for i in range(4))


def test_head_failure_discards_the_tail_and_kills_its_verification(tmp_path: Path) -> None:
    env = Env(tmp_path, command=CHECK_AFTER_SLOW)
    ids = [env.unit("u0", {"f0.txt": "0"}), env.unit("u1", {"BROKEN": "x"}),
           env.unit("u2", {"f2.txt": "2", "SLOW": "x"}), env.unit("u3", {"f3.txt": "3"})]
    out = anyio.run(env.queue.run_once)
    assert [i.merge_id for i, _ in out.failed] == [ids[1]]
    assert sorted(i.merge_id for i in out.promoted) == [ids[0], ids[2], ids[3]]
    assert out.discarded >= 1
    cancelled = env.store.rows("verifications", "status = 'cancelled'")
    assert cancelled and all("discarded" in r["output"] for r in cancelled)
    assert env.events("queue.discarded")
    # the discarded run's whole process group is gone (the shell and its background sleep)
    pids = [int(p) for p in (tmp_path / "mark" / "slow-pids").read_text().split()]
    for pid in pids:
        assert not alive(pid), f"process {pid} of a discarded verification is still running"
    assert env.store.get("units", "u1")["status"] == "fixup"
    assert "BROKEN present" in env.store.get("units", "u1")["reason"]
    files = tree_files(env.path, "mc/green")
    assert {"f0.txt", "f2.txt", "f3.txt"} <= files and "BROKEN" not in files
    env.check_green_only_held_passed_commits()


def test_tail_failure_while_the_head_passes(tmp_path: Path) -> None:
    env = Env(tmp_path)
    ids = [env.unit("u0", {"f0.txt": "0"}), env.unit("u1", {"f1.txt": "1"}),
           env.unit("u2", {"f2.txt": "2"}), env.unit("u3", {"BROKEN": "x"})]
    out = anyio.run(env.queue.run_once)
    assert [i.merge_id for i, _ in out.failed] == [ids[3]]
    assert [i.merge_id for i in out.promoted] == [ids[0], ids[1], ids[2]]
    promotions = env.events("green.promoted")
    assert promotions[0]["units"] == ["u0", "u1"]  # the head first, then what passed behind it
    assert env.status(ids[3]) == "failed"
    # the culprit's commit was re-run before it was blamed
    culprit_runs = [v for v in env.store.rows("verifications") if v["status"] == "failed"]
    assert len(culprit_runs) == 2 and len({v["commit_sha"] for v in culprit_runs}) == 1
    env.check_green_only_held_passed_commits()


def test_culprit_bisection_under_speculation(tmp_path: Path) -> None:
    env = Env(tmp_path, batch_size=4)
    ids = [env.unit(f"u{i}", {f"f{i}.txt": f"{i}\n"} | ({"BROKEN": "x"} if i == 6 else {}))
           for i in range(12)]
    outcomes = env.drain()
    failed = [i.merge_id for o in outcomes for i, _ in o.failed]
    promoted = [i.merge_id for o in outcomes for i in o.promoted]
    assert failed == [ids[6]]
    assert sorted(promoted) == sorted(set(ids) - {ids[6]})
    assert promoted == sorted(promoted)  # strictly in queue order
    # 3 batches in parallel pairs, a split of the failing one, a re-run: far fewer than 13
    assert sum(o.verifications for o in outcomes) <= 9
    assert overlapped(env.store.rows("verifications"))
    files = tree_files(env.path, "mc/green")
    assert {f"f{i}.txt" for i in range(12) if i != 6} <= files and "f6.txt" not in files
    env.check_green_only_held_passed_commits()


def test_a_conflict_with_the_culprit_is_merged_once_the_culprit_is_out(tmp_path: Path) -> None:
    env = Env(tmp_path)
    ids = [env.unit("ok0", {"ok0.txt": "0"}),
           env.unit("bad1", {"BROKEN1": "x", "shared.txt": "bad\n"}),
           env.unit("ok2", {"shared.txt": "a\ngood\nc\n"}),  # conflicts only with bad1
           env.unit("ok3", {"ok3.txt": "3"})]
    outcomes = env.drain()
    assert [i.merge_id for o in outcomes for i, _ in o.failed] == [ids[1]]
    assert sorted(i.merge_id for o in outcomes for i in o.promoted) == [ids[0], ids[2], ids[3]]
    assert not [c for o in outcomes for c in o.conflicts]
    assert env.repo.pygit.revparse_single("mc/green:shared.txt").data == b"a\ngood\nc\n"
    env.check_green_only_held_passed_commits()


def test_a_flaky_suspect_is_promoted_and_the_tail_rebuilt_on_it(tmp_path: Path) -> None:
    # FLAKY fails the first run that sees it, passes after
    command = ('if [ -e FLAKY ] && [ ! -e "$MARK/flaked" ]; then touch "$MARK/flaked"; '
               'echo "test_x FAILED"; exit 1; fi; sleep 0.1; echo ok')
    env = Env(tmp_path, batch_size=1, command=command)
    ids = [env.unit("u0", {"FLAKY": "x"}), env.unit("u1", {"f1.txt": "1"})]
    outcomes = env.drain()
    assert sorted(i.merge_id for o in outcomes for i in o.promoted) == ids
    assert not [f for o in outcomes for f in o.failed]
    assert env.events("verification.flaky")
    heads = green_history_merges(env.path)
    assert len(heads) == 2
    env.check_green_only_held_passed_commits()


def test_depth_zero_is_the_batch_queue_of_before(tmp_path: Path) -> None:
    env = Env(tmp_path, batch_size=16, depth=0, slots=2)
    ids = [env.unit(f"u{i}", {f"f{i}.txt": f"{i}\n"} | ({"BROKEN": "x"} if i == 5 else {}))
           for i in range(16)]
    out = anyio.run(env.queue.run_once)
    # top + re-run, 4 bisection steps, the culprit's prefix re-run, the rest: one at a time
    assert out.verifications == 8 and out.discarded == 0
    assert [i.merge_id for i, _ in out.failed] == [ids[5]]
    assert not overlapped(env.store.rows("verifications"))
    assert not (tmp_path / "state" / "verify-1").exists()
    assert not [e for e in env.store.rows("queue_journal") if e["step"] in ("speculate", "discard")]
    env.check_green_only_held_passed_commits()


def test_a_verification_that_cannot_run_requeues_the_whole_pipeline(tmp_path: Path) -> None:
    env = Env(tmp_path, command="exit 0")
    ids = [env.unit(f"u{i}", {f"f{i}.txt": "x"}) for i in range(4)]
    # the second slot's worktree path is taken by a file: that verification cannot run
    (tmp_path / "state" / "verify-1").parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / "state" / "verify-1").write_text("in the way")
    out = anyio.run(env.queue.run_once)
    assert not out.failed
    statuses = {env.status(m) for m in ids}
    assert statuses <= {"queued", "promoted"} and "queued" in statuses
    assert env.store.rows("verifications", "status = 'error'")
    assert not env.store.rows("verifications", "status = 'running'")
    env.check_green_only_held_passed_commits()


def test_a_branch_already_in_a_candidate_ahead_is_not_merged_twice(tmp_path: Path) -> None:
    env = Env(tmp_path, batch_size=1)
    a = env.unit("a", {"a.txt": "a"})
    head_a = env.store.get("merges", a)["head_commit"]
    b_head = commit_on(env.path, "mc/unit/b", {"b.txt": "b"}, "b on a", parent=head_a)
    add_unit(env.store, env.mission, "b")
    b = env.queue.submit("b", "mc/unit/b", b_head)
    add_unit(env.store, env.mission, "a2")
    a2 = env.queue.submit("a2", "mc/unit/a", head_a)  # the same head queued again
    env.drain()
    assert env.status(a) == "promoted" and env.status(b) == "promoted"
    assert env.status(a2) == "skipped"
    env.check_green_only_held_passed_commits()


def test_one_slot_pipelines_one_verification_at_a_time(tmp_path: Path) -> None:
    env = Env(tmp_path, batch_size=2, depth=2, slots=1)
    ids = [env.unit(f"u{i}", {f"f{i}.txt": "x"} | ({"BROKEN": "x"} if i == 2 else {}))
           for i in range(6)]
    outcomes = env.drain()
    assert [i.merge_id for o in outcomes for i, _ in o.failed] == [ids[2]]
    assert sorted(i.merge_id for o in outcomes for i in o.promoted) == sorted(set(ids) - {ids[2]})
    assert not overlapped(env.store.rows("verifications"))
    assert not (tmp_path / "state" / "verify-1").exists()
    env.check_green_only_held_passed_commits()


def test_without_re_runs_the_culprit_is_blamed_at_once_and_the_tail_rebuilt(tmp_path: Path) -> None:
    env = Env(tmp_path, batch_size=1, depth=2, flaky_reruns=0)
    ids = [env.unit(f"u{i}", {f"f{i}.txt": "x"} | ({"BROKEN": "x"} if i == 1 else {}))
           for i in range(4)]
    outcomes = env.drain()
    assert [i.merge_id for o in outcomes for i, _ in o.failed] == [ids[1]]
    assert sorted(i.merge_id for o in outcomes for i in o.promoted) == [ids[0], ids[2], ids[3]]
    culprit_commit = env.store.get("merges", ids[1])["candidate_commit"]
    culprit_runs = env.store.rows("verifications", "commit_sha = ?", (culprit_commit,))
    assert [v["status"] for v in culprit_runs] == ["failed"]  # blamed without a re-run
    journal = [(r["step"], r["phase"]) for r in env.store.rows("queue_journal")]
    assert ("speculate", "suspect") not in journal  # nothing to re-run: no suspect phase
    env.check_green_only_held_passed_commits()


def test_a_conflict_goes_to_fixup_once_what_it_conflicts_with_is_promoted(tmp_path: Path) -> None:
    # The queue keeps refilling a run while branches are queued; a conflict used to be
    # declared (and its fixup started) only when the whole run ended (fleet benchmark: 13 s
    # after it was found). It is final once the tip it conflicted on is in mc/green.
    env = Env(tmp_path, batch_size=1, slots=1)  # one at a time: the run never runs dry
    ids = [env.unit("a", {"shared.txt": "x\nb\nc\n"}),
           env.unit("b", {"shared.txt": "y\nb\nc\n"}),  # conflicts with a
           *[env.unit(f"ok{n}", {f"ok{n}.txt": str(n)}) for n in range(4)]]
    outcomes = env.drain()
    assert len(outcomes) == 1  # one run: it took the later branches on the way
    assert [i.merge_id for i, _ in outcomes[0].conflicts] == [ids[1]]
    moves = [(e.ts, e.payload) for e in env.store.events_after(0) if e.kind == "merge.status"]
    conflict_at = next(ts for ts, p in moves if p["id"] == ids[1] and p["to"] == "conflict")
    a_promoted = next(ts for ts, p in moves if p["id"] == ids[0] and p["to"] == "promoted")
    last_promoted = max(ts for ts, p in moves if p["to"] == "promoted")
    assert a_promoted <= conflict_at < last_promoted
    env.check_green_only_held_passed_commits()


def test_a_conflict_with_mc_green_itself_is_declared_before_the_candidate_it_met_passes(
    tmp_path: Path,
) -> None:
    # "b" conflicts with "a", merged already. Taken onto ok0's candidate (speculative, 1 s to
    # verify), its conflict cannot depend on that candidate's fate: it is declared at once,
    # not when ok0 is promoted (1.6 s on the fleet benchmark's critical chain).
    env = Env(tmp_path, batch_size=1, command="sleep 1; " + CHECK)
    a = env.unit("a", {"shared.txt": "x\nb\nc\n"})
    env.drain()
    assert env.status(a) == "promoted"
    ok0 = env.unit("ok0", {"ok0.txt": "0"})
    b = env.unit("b", {"shared.txt": "y\nb\nc\n"})  # from the green before "a"
    outcomes = env.drain()
    assert [i.merge_id for o in outcomes for i, _ in o.conflicts] == [b]
    assert [i.merge_id for o in outcomes for i in o.promoted] == [ok0]
    moves = [(e.ts, e.payload) for e in env.store.events_after(0) if e.kind == "merge.status"]
    conflict_at = next(ts for ts, p in moves if p["id"] == b and p["to"] == "conflict")
    ok0_promoted = next(ts for ts, p in moves if p["id"] == ok0 and p["to"] == "promoted")
    assert conflict_at < ok0_promoted - 0.5, (conflict_at, ok0_promoted)
    row = env.store.get("merges", b)
    assert row is not None and "shared.txt" in row["reason"]
    env.check_green_only_held_passed_commits()


def flaky_ahead_check(fails: int) -> str:
    """Without b.txt a run takes 1.5 s, with it 0.1 s; a tree with FLAKY fails the first
    ``fails`` runs that reach it (a flake that lasts a while, as a shared service that is down)."""
    return ('if [ -e b.txt ]; then sleep 0.1; else sleep 1.5; fi; '
            'if [ -e FLAKY ]; then n=1; while ! mkdir "$MARK/flake$n" 2>/dev/null; do n=$((n+1)); done; '
            f'[ $n -le {fails} ] && {{ echo "test_flaky FAILED (run $n)"; exit 1; }}; fi; echo ok')


def test_a_branch_behind_a_flaky_head_is_not_blamed_for_its_flake(tmp_path: Path) -> None:
    # A review proved that re-running a failed branch behind the head before the head is
    # settled (tried in the seventh pass, reverted) blamed "b" for "a"'s flake: both failures
    # of b's commit came from a's test while a's own run passed. The confirming re-run waits
    # for what is ahead to pass.
    env = Env(tmp_path, batch_size=1, depth=1, slots=2, command=flaky_ahead_check(2))
    a = env.unit("a", {"FLAKY": "x"})
    b = env.unit("b", {"b.txt": "b"})
    outcomes = env.drain()
    assert not [i.merge_id for o in outcomes for i, _ in o.failed]
    assert env.status(a) == env.status(b) == "promoted"
    env.check_green_only_held_passed_commits()


def test_a_branch_behind_a_split_batch_is_not_blamed_for_a_flake_in_it(tmp_path: Path) -> None:
    env = Env(tmp_path, batch_size=2, depth=1, slots=2, command=flaky_ahead_check(3))
    env.unit("a1", {"a1.txt": "1"})
    env.unit("a2", {"FLAKY": "x"})
    b = env.unit("b", {"b.txt": "b"})
    env.drain()
    assert env.status(b) == "promoted"
    env.check_green_only_held_passed_commits()
