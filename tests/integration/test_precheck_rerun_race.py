"""A fixup round that started beside a precheck's re-run, whose candidates finished first,
decides as soon as the re-run's verdict is told, and its winner may reach the queue before the
unit's own task has ended. Found by a review: the unit's task then wrote the unit's own
rejected commit back as its head, so a second round (the queue rejected the winner) repaired
that commit again, not the winner.
"""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
import pytest

import engine.fixup as fixup
from engine.config import load_config
from engine.controller import Controller
from engine.store import Store
from tests.e2e.conftest import make_target, write_config
from tests.integration.rerun_support import RESTORE_GREET, rerun_settings, shout_cassette


@pytest.mark.parametrize("fail_in_queue", [False, True])
def test_a_round_s_winner_keeps_its_head_when_the_re_run_ends_after_it(
    tmp_path: Path, monkeypatch, fail_in_queue: bool,  # type: ignore[no-untyped-def]
) -> None:
    make_target(tmp_path)
    mark = tmp_path / "ran-once"
    unittest = f"{sys.executable} -m unittest discover -s tests -t ."
    # the unit's worktree (greet broken): first run fails at once, the re-run after 3 s;
    # a fixup candidate's worktree and the queue's (greet restored) pass at once
    command = (f"if grep -q HEY app/greet.py; then if [ -e {mark} ]; then sleep 3; "
               f"echo 'FAILED again'; exit 1; fi; touch {mark}; echo 'FAILED first'; exit 1; "
               f"fi; {unittest}")
    if fail_in_queue:  # the queue fails the winner (both runs): the unit goes to round 2
        count = tmp_path / "queue-runs"
        command = (f"case $PWD in *verify*) if [ -f app/shout.py ] && "
                   f"[ $(cat {count} 2>/dev/null || echo 0) -lt 2 ]; then "
                   f"echo $(( $(cat {count} 2>/dev/null || echo 0) + 1 )) > {count}; "
                   f"echo 'FAILED in queue'; exit 1; fi;; esac; " + command)
    cassette = shout_cassette(breaks_greet=True, fixup=RESTORE_GREET)
    config = load_config(write_config(tmp_path, cassette,
                                      rerun_settings(command, rounds=2, workers=2)))
    store = Store(config.db_path())

    seen: dict[str, object] = {}
    real_submit = fixup.submit

    def spy_submit(rt, unit_id, branch, head):  # type: ignore[no-untyped-def]
        real_submit(rt, unit_id, branch, head)
        seen.setdefault("winner_submitted", (branch, head))

    merged_into_candidates: list[str] = []
    real_prepare = fixup.prepare_candidate

    def spy_prepare(workdir, unit_head, unit_title):  # type: ignore[no-untyped-def]
        merged_into_candidates.append(unit_head)
        return real_prepare(workdir, unit_head, unit_title)

    monkeypatch.setattr(fixup, "prepare_candidate", spy_prepare)
    monkeypatch.setattr(fixup, "submit", spy_submit)
    outcome = anyio.run(Controller(config, store).run)
    if fail_in_queue:  # round 2 repairs the winner the queue rejected, not the unit's commit
        assert len(merged_into_candidates) == 2, merged_into_candidates
        assert merged_into_candidates[1] == seen["winner_submitted"][1], (  # type: ignore[index]
            "round 2 merged the unit's original rejected commit, not round 1's winner")
    assert outcome.status == "completed", outcome.reason
    assert "winner_submitted" in seen, seen
    unit = store.units(outcome.mission_id)[0]
    merges = sorted(store.rows("merges", "unit_id = ?", (unit["id"],)), key=lambda m: m["id"])
    assert unit["status"] == "merged" and unit["head_commit"] == merges[-1]["head_commit"]
    store.close()
