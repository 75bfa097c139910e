"""`mc dashboard`: the app attached to a mission another process runs (real subprocesses)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from mc_tui.screens.approval_modal import ApprovalModal
from mc_tui.screens.main import MainScreen
from mc_tui.widgets.worker_log import WorkerLog
from mc_tui.widgets.workers import WorkersTable
from tests.tui.conftest import settle

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]


async def run_python(code: str) -> str:
    result = await anyio.run_process([sys.executable, "-c", code], cwd=ROOT, check=True)
    return result.stdout.decode()


async def test_attached_app_follows_another_process_and_writes_only_commands(calm_world) -> None:
    app = calm_world.app()
    store, mid = calm_world.store, calm_world.mission.mission_id
    db = store.path
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        before_events = app.state.events_applied
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "benchmarks" / "tui_load.py"), "--db", str(db), "--mission", str(mid),
             "--rate", "1500", "--seconds", "1"],
            cwd=ROOT, stdout=subprocess.PIPE, text=True,
        )
        while proc.poll() is None:
            await pilot.pause(0.05)  # the UI keeps running while the other process writes
        written = json.loads(proc.stdout.read())["written"]
        assert proc.returncode == 0 and written > 500
        await settle(pilot, app)
        assert app.state.events_applied - before_events >= written
        assert app.query_one(WorkersTable).row_count >= 4
        slot = app.query_one(WorkersTable).selected_slot()
        assert slot is not None
        assert app.query_one(WorkerLog).line_count > 0
        assert round(app.state.cost_total, 6) == round(store.mission_cost(mid), 6)

        rows_before = {t: store.query(f"SELECT COUNT(*) AS n FROM {t}")[0]["n"]
                       for t in ("units", "attempts", "merges", "approvals", "missions")}
        await pilot.press("p")
        commands = store.rows("commands", "mission_id = ?", (mid,))
        assert [c["kind"] for c in commands] == ["pause"]
        rows_after = {t: store.query(f"SELECT COUNT(*) AS n FROM {t}")[0]["n"] for t in rows_before}
        assert rows_after == rows_before  # attached: nothing but commands written


async def test_approval_from_another_process_opens_and_is_decided_here(calm_world) -> None:
    app = calm_world.app(clock=time.time)
    db, mid = calm_world.store.path, calm_world.mission.mission_id
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        out = await run_python(
            "from engine.store import Store\n"
            f"s = Store({str(db)!r})\n"
            f"print(s.create_approval(mission_id={mid}, gate='large_merge', title='Merge 900 lines',"
            " diffstat=' a.py | 900 +', diff='+x\\n', timeout=120))\n"
        )
        approval_id = int(out.strip())
        deadline = time.monotonic() + 15  # generous: a loaded CI machine
        while not isinstance(app.screen, ApprovalModal) and time.monotonic() < deadline:
            await pilot.pause(0.05)
        assert isinstance(app.screen, ApprovalModal) and app.screen.approval_id == approval_id
        await pilot.press("y")
        await settle(pilot, app)
        assert isinstance(app.screen, MainScreen)
        check = await run_python(
            "from engine.store import Store\n"
            f"r = Store({str(db)!r}).get('approvals', {approval_id})\n"
            "print(r['status'], r['decided_by'])\n"
        )
        assert check.split() == ["approved", "tui"]


async def test_attach_to_a_finished_mission_is_read_only(calm_world) -> None:
    store, mid = calm_world.store, calm_world.mission.mission_id
    store.set_status("missions", mid, "completed", ended_at=store.get("missions", mid)["started_at"] + 900)
    app = calm_world.app(mission_id=mid)
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        await settle(pilot, app)
        await pilot.press("p", "s")
        assert not store.rows("commands")
        assert any("is completed" in n.message for n in app._notifications)
        await pilot.press("q")
    assert app.return_value == 0
