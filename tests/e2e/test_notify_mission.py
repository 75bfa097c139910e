"""A whole mission (scripted backend, real git, real subprocess) notifies a webhook on
loopback: started and finished arrive, batched, before `mc` exits."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import (
    AMBITION_OK,
    OBJECTIVE_MET,
    plan_entry,
    run_mc,
    worker_entry,
    write_config,
)
from tests.support.notify_receivers import LoopbackReceiver

pytestmark = pytest.mark.slow


def test_a_mission_notifies_its_webhook(target: Path) -> None:
    with LoopbackReceiver() as hook:
        config = write_config(
            target,
            plan_entry("Add a farewell", "app/bye.py") + AMBITION_OK + OBJECTIVE_MET
            + worker_entry("Add a farewell", "app/bye.py", "def bye():\\n    return 'bye'\\n"),
            f'[notify]\nwebhook_url = "{hook.url}/mc"\nbatch_seconds = 0.5\n',
        )
        result = run_mc("--config", str(config), "--no-ui")
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
        received = list(hook.received)  # `mc` has exited: whatever arrived is all there is
    kinds = [n["kind"] for r in received for n in r.body["notices"]]
    assert kinds[0] == "started" and kinds[-1] == "finished", kinds
    assert "mission #1 completed" in received[-1].body["text"]
