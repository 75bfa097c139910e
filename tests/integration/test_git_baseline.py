"""The merge queue judges each candidate against the baseline it is built on (real repos).

The verification command writes JUnit XML to ``$MC_JUNIT_XML``: one failing test case per
``BASEFAIL``/``BROKEN*`` file in the tree, so which tests fail is known.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from test_git_support import add_unit, commit_on, init_repo, open_store, tree_files

from engine.gitops import GitRepo, MergeQueue
from engine.gitops.baseline import NOT_VERIFIABLE

JUNIT_CHECK = (
    'fails=""; for f in BASEFAIL BROKEN*; do [ -e "$f" ] && fails="$fails $f"; done; '
    '{ echo "<testsuite>"; for t in $fails; do '
    'echo "<testcase classname=\\"suite\\" name=\\"$t\\"><failure/></testcase>"; done; '
    'echo "<testcase classname=\\"suite\\" name=\\"ok\\"/></testsuite>"; } > "$MC_JUNIT_XML"; '
    'echo "failing:$fails"; [ -z "$fails" ]'
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Env:
    def __init__(self, tmp: Path, command: str, files: dict[str, str] | None = None) -> None:
        self.path = tmp / "target"
        init_repo(self.path, {"README.md": "hello\n", **(files or {})})
        self.repo = GitRepo(self.path)
        self.green0 = self.repo.ensure_green("main")
        self.store, self.mission = open_store(tmp / "state" / "mission.db")
        self.queue = MergeQueue(
            self.repo, self.store, mission_id=self.mission, verify_command=command,
            verify_timeout=20, batch_size=8, verify_dir=tmp / "state" / "verify",
        )

    def unit(self, uid: str, files: dict[str, str | None]) -> int:
        head = commit_on(self.path, f"mc/unit/{uid}", files, f"unit {uid}",
                         parent=self.repo.green_head())
        add_unit(self.store, self.mission, uid)
        return self.queue.submit(uid, f"mc/unit/{uid}", head)

    def events(self, kind: str) -> list[dict]:
        return [e.payload for e in self.store.events_after(0) if e.kind == kind]


@pytest.mark.anyio
async def test_only_new_failures_are_blamed_on_a_red_baseline(tmp_path: Path) -> None:
    env = Env(tmp_path, JUNIT_CHECK, {"BASEFAIL": "x"})
    baseline = await env.queue.verify_baseline()
    assert baseline.red and baseline.failing == frozenset({"suite.BASEFAIL"})
    recorded = env.events("baseline.recorded")
    assert len(recorded) == 1 and recorded[0]["failing"] == ["suite.BASEFAIL"]
    good = env.unit("good", {"a.txt": "a"})
    bad = env.unit("bad", {"BROKEN_b": "b"})
    later = env.unit("later", {"c.txt": "c"})
    out = await env.queue.run_once()
    assert sorted(i.merge_id for i in out.promoted) == [good, later]
    assert [i.merge_id for i, _ in out.failed] == [bad]
    reason = env.store.get("merges", bad)["reason"]
    assert "new failing test(s): suite.BROKEN_b" in reason
    assert "baseline's failing tests" in env.store.get("merges", good)["reason"]
    assert {"a.txt", "c.txt"} <= tree_files(env.path, "mc/green")
    assert "BROKEN_b" not in tree_files(env.path, "mc/green")


@pytest.mark.anyio
async def test_a_unit_that_fixes_the_baseline_makes_the_new_green_the_baseline(tmp_path: Path) -> None:
    env = Env(tmp_path, JUNIT_CHECK, {"BASEFAIL": "x"})
    await env.queue.verify_baseline()
    env.unit("fix", {"BASEFAIL": None})
    await env.queue.run_once()
    green = env.repo.green_head()
    assert env.queue.baseline_of(green).red is False
    # now the old failure is new again: blamed
    again = env.unit("again", {"BASEFAIL": "back"})
    out = await env.queue.run_once()
    assert [i.merge_id for i, _ in out.failed] == [again]
    assert env.repo.green_head() == green


@pytest.mark.anyio
async def test_exit_status_only_red_baseline_is_not_verifiable_not_blamed(tmp_path: Path) -> None:
    # no test results: the exit status is all there is
    env = Env(tmp_path, 'if [ -e WORSE ]; then exit 3; fi; echo "service down"; exit 2')
    baseline = await env.queue.verify_baseline()
    assert baseline.red and baseline.failing is None and baseline.exit_code == 2
    same = env.unit("same", {"a.txt": "a"})
    out = await env.queue.run_once()
    assert [i.merge_id for i in out.promoted] == [same]
    assert env.store.get("merges", same)["reason"] == NOT_VERIFIABLE
    worse = env.unit("worse", {"WORSE": "x"})
    out = await env.queue.run_once()
    assert [i.merge_id for i, _ in out.failed] == [worse]
    assert "fails differently from the baseline" in env.store.get("merges", worse)["reason"]


@pytest.mark.anyio
async def test_a_flaky_failure_is_rerun_and_recorded_not_blamed(tmp_path: Path) -> None:
    counter = tmp_path / "runs"  # outside the repository
    command = (
        f'n=$(cat {counter} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {counter}; '
        'if [ "$n" = 2 ]; then echo "<testsuite><testcase classname=\\"t\\" name=\\"flaky\\">'
        '<failure/></testcase></testsuite>" > "$MC_JUNIT_XML"; exit 1; fi; '
        'echo "<testsuite><testcase classname=\\"t\\" name=\\"flaky\\"/></testsuite>" > "$MC_JUNIT_XML"'
    )
    env = Env(tmp_path, command)
    assert not (await env.queue.verify_baseline()).red  # run 1 passes
    mid = env.unit("u", {"a.txt": "a"})
    out = await env.queue.run_once()  # run 2 fails, run 3 (same commit) passes
    assert [i.merge_id for i in out.promoted] == [mid] and out.failed == []
    assert out.verifications == 2
    flaky = env.events("verification.flaky")
    assert len(flaky) == 1 and flaky[0]["tests"] == ["t.flaky"]


@pytest.mark.anyio
async def test_reruns_can_be_switched_off(tmp_path: Path) -> None:
    env = Env(tmp_path, JUNIT_CHECK)
    env.queue.flaky_reruns = 0
    await env.queue.verify_baseline()
    mid = env.unit("bad", {"BROKEN": "x"})
    out = await env.queue.run_once()
    assert out.verifications == 1 and [i.merge_id for i, _ in out.failed] == [mid]


def test_green_baseline_blames_every_failure(tmp_path: Path) -> None:
    env = Env(tmp_path, JUNIT_CHECK)
    anyio.run(env.queue.verify_baseline)
    mid = env.unit("bad", {"BROKEN": "x"})
    out = anyio.run(env.queue.run_once)
    assert [i.merge_id for i, _ in out.failed] == [mid]
    assert out.verifications == 2  # the failure was confirmed by one re-run
