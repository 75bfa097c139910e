"""``kill -9`` while a rejected precheck's re-run is in flight (its fixup round already
started beside it: engine/checks.py ``repair_during_rerun``). The verdict the round waited for
is lost with the process; the resumed run does what a crash during a precheck always did: the
unit's own work goes to the merge queue, which verifies it. No round is started again, and a
unit with no fixup rounds left is not failed for a flaky test (found by a review: it was).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.store import Store
from tests.e2e.conftest import leftover_processes, make_target, write_config
from tests.integration.rerun_support import rerun_settings, shout_cassette


def mc(config: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "mc_tui", "mission", "--config", str(config), "--no-ui", "--yes",
         *extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL, start_new_session=True)


@pytest.mark.parametrize("max_attempts", [0, 1])
def test_kill_during_a_flaky_precheck_rerun_then_resume(tmp_path: Path,
                                                        max_attempts: int) -> None:
    make_target(tmp_path)
    mark = tmp_path / "ran-once"
    unittest = f"{sys.executable} -m unittest discover -s tests -t ."
    # flaky: the first run that sees app/shout.py fails; every later one passes after 4 s
    command = (f"if [ -f app/shout.py ]; then if [ ! -e {mark} ]; then touch {mark}; "
               f"echo 'FAILED test_shout (flaky)'; exit 1; fi; sleep 4; fi; {unittest}")
    fix = ('  { type = "write", path = "app/shout.py", '
           "content = \"def shout():\\n    return 'HEY!'\\n\" },\n")
    config = write_config(tmp_path, shout_cassette(breaks_greet=False, fixup=fix),
                          rerun_settings(command, rounds=max_attempts))
    db = tmp_path / "repo" / ".git" / "mc" / "mission.db"
    proc = mc(config)
    try:
        deadline = time.monotonic() + 60
        while not mark.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        assert mark.exists(), "the precheck never ran"
        time.sleep(1.0)  # inside the 4 s re-run
        assert proc.poll() is None
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=10)
    store = Store(db)
    at_kill = store.units(1)[0]
    last_event = store.query("SELECT max(id) AS n FROM events")[0]["n"]
    store.close()

    resumed = mc(config, "--resume")
    assert resumed.wait(timeout=120) is not None
    store = Store(db)
    unit = [u for u in store.units(1) if u["is_leaf"]][0]
    rounds = store.rows("events", "kind = 'fixup.started' AND id > ?", (last_event,))
    assert unit["status"] == "merged", (at_kill["status"], unit["status"], unit["reason"])
    assert not rounds, "a fixup round was started again after the resume"
    merges = store.rows("merges", "unit_id = ?", (unit["id"],))
    assert [m["status"] for m in merges] == ["promoted"] and "fixup" not in merges[0]["branch"]
    assert not leftover_processes(tmp_path)
    store.close()
