"""The speculative merge queue takes a branch queued while a run is in flight at once
(``MergeQueue.submit`` -> ``Speculation.poke``), when a verify slot is free: real repository,
real verification command, no mission."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
from test_git_support import add_unit, commit_on, git, init_repo, open_store

from engine.gitops import GitRepo, MergeQueue
from engine.ledger import UnitLedger

SLEEP = 2.0
CHECK = f"sleep {SLEEP}; echo all good"


def test_a_branch_queued_mid_run_is_verified_at_once_and_promoted_in_the_same_run(
    tmp_path: Path,
) -> None:
    path = tmp_path / "target"
    init_repo(path, {"README.md": "hello\n"})
    repo = GitRepo(path)
    green0 = repo.ensure_green("main")
    store, mission = open_store(tmp_path / "state" / "mission.db")
    queue = MergeQueue(
        repo, store, mission_id=mission, verify_command=CHECK, verify_timeout=20,
        batch_size=8, verify_dir=tmp_path / "state" / "verify", units=UnitLedger(store),
        speculative_depth=1, verify_slots=2,
    )
    heads = {uid: commit_on(path, f"mc/unit/{uid}", {f"{uid}.txt": f"{uid}\n"}, f"unit {uid}",
                            parent=green0) for uid in ("a", "b")}
    add_unit(store, mission, "a")
    a = queue.submit("a", "mc/unit/a", heads["a"])
    ids: dict[str, int] = {}
    submitted: list[float] = []
    outcomes = []

    async def main() -> None:
        async def run() -> None:
            outcomes.append(await queue.run_once())

        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            await anyio.sleep(0.3)  # a's verification is running, one slot free
            assert [r["status"] for r in store.rows("verifications")] == ["running"]
            add_unit(store, mission, "b")
            ids["b"] = queue.submit("b", "mc/unit/b", heads["b"])
            submitted.append(time.time())

    anyio.run(main)
    (outcome,) = outcomes
    b = ids["b"]
    # one run_once promoted both, in queue order
    assert [i.merge_id for i in outcome.promoted] == [a, b], outcome
    assert (store.get("merges", a)["status"], store.get("merges", b)["status"]) == (
        "promoted", "promoted")
    assert queue.pending() == 0
    # b's verification (of a's candidate with b on it) started while a's still ran, right
    # after it was queued, not when a's ended
    rows = sorted(store.rows("verifications"), key=lambda r: r["started_at"])
    assert len(rows) == 2 and all(r["status"] == "passed" for r in rows), rows
    first, second = rows
    assert second["started_at"] < first["ended_at"], rows
    assert second["started_at"] - submitted[0] < 1.0, (rows, submitted)
    # promoted on top of each other: mc/green is a's candidate, then b's on it
    merged = git(path, "log", "--first-parent", "--reverse", "--merges", "--format=%P",
                 "mc/green").splitlines()
    assert [line.split()[1] for line in merged] == [heads["a"], heads["b"]]
    passed = {r["commit_sha"] for r in rows}
    assert repo.green_head() in passed
    store.close()
