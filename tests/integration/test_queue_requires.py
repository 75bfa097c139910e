"""Merge rows that *require* commits (stacked branches, engine/stacking.py) in the merge
queue on real repositories, no mission: a branch built on a commit ``mc/green`` lacks is
merged only onto a candidate that holds it, in the batch queue and the speculative one."""

from __future__ import annotations

from pathlib import Path

import anyio
import pygit2
import pytest
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
from engine.gitops.candidate import build_chain
from engine.ledger import UnitLedger

CHECK = 'for f in BROKEN*; do [ -e "$f" ] && { echo "tests failed: $f present"; exit 1; }; done; echo all good'


class Env:
    def __init__(self, tmp: Path, *, depth: int = 0, batch_size: int = 8) -> None:
        self.path = tmp / "target"
        init_repo(self.path, {"README.md": "hello\n"})
        self.repo = GitRepo(self.path)
        self.green0 = self.repo.ensure_green("main")
        self.store, self.mission = open_store(tmp / "state" / "mission.db")
        self.queue = MergeQueue(
            self.repo, self.store, mission_id=self.mission, verify_command=CHECK,
            verify_timeout=20, batch_size=batch_size, verify_dir=tmp / "state" / "verify",
            units=UnitLedger(self.store), speculative_depth=depth, verify_slots=2,
        )

    def commit(self, uid: str, files: dict[str, str | None], parent: str | None = None) -> str:
        return commit_on(self.path, f"mc/unit/{uid}", files, f"unit {uid}",
                         parent=parent or self.green0)

    def submit(self, uid: str, head: str, requires: list[str] | None = None) -> int:
        add_unit(self.store, self.mission, uid)
        return self.queue.submit(uid, f"mc/unit/{uid}", head, requires or [])

    def drain(self, runs: int = 6) -> None:
        for _ in range(runs):
            if not self.queue.pending():
                return
            anyio.run(self.queue.run_once)

    def status(self, merge_id: int) -> str:
        row = self.store.get("merges", merge_id)
        assert row is not None
        return row["status"]

    def in_green(self, commit: str) -> bool:
        return self.repo.is_ancestor(commit, self.repo.green_head())

    def merge_order(self) -> list[str]:
        """Second parents of mc/green's first-parent merges, oldest first."""
        out = git(self.path, "log", "--first-parent", "--reverse", "--merges", "--format=%P",
                  "mc/green")
        return [line.split()[1] for line in out.splitlines()]


@pytest.mark.parametrize("depth", [0, 2])
def test_a_branch_requiring_a_commit_not_in_green_is_held_until_it_lands(
    tmp_path: Path, depth: int,
) -> None:
    env = Env(tmp_path, depth=depth)
    a1 = env.commit("a", {"a.txt": "a\n"})
    b1 = env.commit("b", {"b.txt": "b\n"}, parent=a1)  # stacked on a's work
    b = env.submit("b", b1, [a1])
    assert env.queue.pending() == 0
    assert [i.merge_id for i in env.queue.held()] == [b]
    assert env.queue.held()[0].requires == [a1]
    # a branch holding a1, queued *after* b (b's agent finished first): both can merge now,
    # a first, and one run takes them together
    a = env.submit("a", a1)
    assert env.queue.pending() == 2 and env.queue.held() == []
    assert [i.merge_id for i in env.queue._take(limit=0)] == [a, b]
    anyio.run(env.queue.run_once)
    assert (env.status(a), env.status(b)) == ("promoted", "promoted")
    env.drain()
    assert env.status(b) == "promoted"
    assert env.merge_order() == [a1, b1]
    heads = green_history_merges(env.path)
    assert len(heads) == len(set(heads)) == 2
    assert env.store.get("units", "b")["status"] == "merged"


@pytest.mark.parametrize("depth", [0, 2])
def test_a_branch_requiring_one_queued_ahead_merges_after_it(tmp_path: Path, depth: int) -> None:
    # batch_size 1 with depth 2: b's batch is built on a's unpromoted candidate
    env = Env(tmp_path, depth=depth, batch_size=1 if depth else 8)
    a1 = env.commit("a", {"a.txt": "a\n"})
    b1 = env.commit("b", {"b.txt": "b\n"}, parent=a1)
    a = env.submit("a", a1)
    b = env.submit("b", b1, [a1])
    assert env.queue.pending() == 2 and env.queue.held() == []
    env.drain()
    assert (env.status(a), env.status(b)) == ("promoted", "promoted")
    assert env.merge_order() == [a1, b1]
    assert {"a.txt", "b.txt"} <= tree_files(env.path, "mc/green")


@pytest.mark.parametrize("depth", [0, 2])
def test_a_culprit_requirement_keeps_its_stacked_branch_out_of_green(
    tmp_path: Path, depth: int,
) -> None:
    # a breaks the check; b, built on it, carries the break too: when the queue blames a,
    # b must not be merged as an innocent of the batch (nor on its own)
    env = Env(tmp_path, depth=depth, batch_size=1 if depth else 8)
    a1 = env.commit("a", {"a.txt": "a\n", "BROKEN": "x\n"})
    b1 = env.commit("b", {"b.txt": "b\n"}, parent=a1)
    c1 = env.commit("c", {"c.txt": "c\n"})
    a = env.submit("a", a1)
    b = env.submit("b", b1, [a1])
    c = env.submit("c", c1)
    env.drain()
    assert env.status(a) == "failed"
    assert env.status(b) == "queued", env.store.get("merges", b)
    assert env.status(c) == "promoted"
    assert [i.merge_id for i in env.queue.held()] == [b] and env.queue.pending() == 0
    assert not env.in_green(a1) and not env.in_green(b1)
    assert "BROKEN" not in tree_files(env.path, "mc/green")
    assert env.merge_order() == [c1]


def test_build_chain_holds_a_branch_whose_required_commit_is_missing(tmp_path: Path) -> None:
    path = tmp_path / "repo"
    base = init_repo(path, {"README.md": "hello\n"})
    a1 = commit_on(path, "a", {"a.txt": "a\n"}, "a", parent=base)
    b1 = commit_on(path, "b", {"b.txt": "b\n"}, "b", parent=a1)
    c1 = commit_on(path, "c", {"c.txt": "c\n"}, "c", parent=base)
    repo = pygit2.Repository(str(path))
    requires = {1: [a1]}

    alone = build_chain(repo, base, [(1, "b", b1), (2, "c", c1)], requires)
    assert alone.held == [1] and [link.key for link in alone.links] == [2]
    assert not repo.descendant_of(pygit2.Oid(hex=alone.prefix(1)), pygit2.Oid(hex=a1))

    behind = build_chain(repo, base, [(1, "b", b1), (0, "a", a1)], requires)  # a after b
    assert behind.held == [1] and [link.key for link in behind.links] == [0]

    ahead = build_chain(repo, base, [(0, "a", a1), (1, "b", b1)], requires)
    assert ahead.held == [] and [link.key for link in ahead.links] == [0, 1]
    tip = repo[pygit2.Oid(hex=ahead.prefix(2))].peel(pygit2.Commit)
    assert [str(p) for p in tip.parent_ids] == [ahead.prefix(1), b1]

    # the requirement already in the base: merged at once
    on_a = build_chain(repo, a1, [(1, "b", b1)], requires)
    assert on_a.held == [] and [link.key for link in on_a.links] == [1]
    merged = commit_on(path, "m", {"m.txt": "m\n"}, "m", parent=a1)
    on_m = build_chain(repo, merged, [(1, "b", b1)], requires)
    assert on_m.held == [] and [link.key for link in on_m.links] == [1]
    # without requirements the same branch is merged onto a base lacking a1 (carrying it in)
    plain = build_chain(repo, base, [(1, "b", b1)])
    assert plain.held == [] and [link.key for link in plain.links] == [1]
