"""The engine's injectable clock (engine/clock.py): a real scripted mission run under a fixed
clock stamps every event and row with it and dates every commit it makes by it, so a run
can be recorded the same way every time."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pygit2
import pytest

from engine import clock
from engine.gitops.identity import agent_signature, engine_signature
from tests.support.scripted_mission import scripted_mission

BASE = 1_700_000_000.0


def test_fixed_clock_steps_and_the_real_one_comes_back() -> None:
    ticks = clock.fixed_clock(BASE, step=0.5)
    assert [ticks(), ticks(), ticks()] == [BASE, BASE + 0.5, BASE + 1.0]
    with clock.use_clock(clock.fixed_clock(BASE)):
        assert clock.installed() and clock.now() == BASE
        assert clock.git_date_env() == {"GIT_AUTHOR_DATE": f"@{int(BASE)} +0000",
                                         "GIT_COMMITTER_DATE": f"@{int(BASE)} +0000"}
        assert (engine_signature().time, agent_signature().offset) == (int(BASE), 0)
    assert not clock.installed() and clock.git_date_env() == {}
    assert abs(clock.now() - time.time()) < 5 and abs(engine_signature().time - time.time()) < 5


@pytest.mark.slow
def test_a_mission_under_a_fixed_clock_is_stamped_and_dated_by_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the target's own first commit is the test's, dated like the engine's
    monkeypatch.setenv("GIT_AUTHOR_DATE", f"@{int(BASE)} +0000")
    monkeypatch.setenv("GIT_COMMITTER_DATE", f"@{int(BASE)} +0000")
    with clock.use_clock(clock.fixed_clock(BASE)):
        mission = scripted_mission(tmp_path, units=2)
        assert anyio.run(mission.engine) == 0
    store = mission.store
    assert store.rows("missions")[0]["status"] == "completed"
    events = store.events_after(0)
    assert len(events) > 50 and {e.ts for e in events} == {BASE}
    stamps = {(u["created_at"], u["updated_at"]) for u in store.rows("units")}
    assert stamps == {(BASE, BASE)}
    assert {(a["started_at"], a["ended_at"]) for a in store.rows("attempts")} == {(BASE, BASE)}
    repo = pygit2.Repository(str(tmp_path / "repo"))
    green = repo.references["refs/heads/mc/green"].peel(pygit2.Commit)
    commits = list(repo.walk(green.id))
    assert len(commits) >= 3  # the target's first commit, the units' work and the merges
    assert {(c.author.time, c.committer.time, c.committer.offset) for c in commits} == {
        (int(BASE), int(BASE), 0)}
