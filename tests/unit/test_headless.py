"""The headless renderer: live panel on a terminal, plain lines otherwise, JSON lines."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import anyio
from rich.console import Console

from engine.config import load_config
from engine.mission import MissionOutcome
from engine.models import MissionStatus
from engine.store import Store
from mc_tui.headless import run_headless


def fake_engine(store: Store):  # type: ignore[no-untyped-def]
    async def engine() -> MissionOutcome:
        mid = store.insert("missions", {"objective": "demo objective", "status": "running",
                                        "started_at": time.time()}, event="mission.created")
        now = time.time()
        store.insert("units", {"id": "u1", "mission_id": mid, "title": "Do a thing", "status": "planned",
                               "created_at": now, "updated_at": now}, event="unit.created")
        store.append_event("log", mission_id=mid, message="hello from the engine")
        await anyio.sleep(0.8)  # long enough for the live panel to refresh
        store.set_status("units", "u1", "merged")
        store.set_status("missions", mid, "completed", outcome="done", ended_at=time.time())
        return MissionOutcome(mid, MissionStatus.COMPLETED, "objective met", 0)

    return engine


def run(tmp_path: Path, console: Console, json_mode: bool = False) -> int:
    store = Store(tmp_path / "m.db")
    config = load_config(tmp_path / "none.toml", require_file=False)
    return anyio.run(lambda: run_headless(store, config, fake_engine(store), json_mode=json_mode,
                                          console=console))


def test_live_mode_on_a_terminal(tmp_path: Path) -> None:
    out = io.StringIO()
    code = run(tmp_path, Console(file=out, force_terminal=True, width=120))
    text = out.getvalue()
    assert code == 0
    assert "hello from the engine" in text
    assert "units" in text and "spend" in text  # the live status panel was drawn
    assert "Mission #1" in text and "completed" in text  # final summary


def test_plain_lines_when_not_a_terminal(tmp_path: Path) -> None:
    out = io.StringIO()
    code = run(tmp_path, Console(file=out, force_terminal=False, width=120))
    lines = out.getvalue().splitlines()
    assert code == 0
    assert any(line[:8].count(":") == 2 and "hello from the engine" in line for line in lines)
    assert "\x1b[" not in out.getvalue()


def test_json_mode(tmp_path: Path) -> None:
    out = io.StringIO()
    run(tmp_path, Console(file=out, force_terminal=False, width=300), json_mode=True)
    events = [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]
    assert [e["kind"] for e in events][:3] == ["mission.created", "unit.created", "log"]
