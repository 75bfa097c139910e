"""A mission whose heartbeat stopped (its engine was killed) shows as "lost", with how to
resume it, in `mc status` and on the web dashboard; a beating one does not."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from engine.registry import Registry
from engine.resilience.liveness import LOST_AFTER_S, is_lost, shown_status
from engine.services.live.app import create_app
from engine.services.live.projects import ProjectSource
from engine.store import Store
from mc_tui.cli import cli


def mission_store(tmp_path: Path, heartbeat_age: float, status: str = "running") -> Path:
    cfg = tmp_path / "mission-control.toml"
    cfg.write_text('[target]\nname = "alpha"\npath = "."\n[state]\ndir = "st"\n')
    store = Store(tmp_path / "st" / "mission.db")
    now = time.time()
    store.insert("missions", {"objective": "add coverage for auth", "status": status,
                              "started_at": now - 3600, "heartbeat_at": now - heartbeat_age})
    store.close()
    return cfg


def test_is_lost_only_for_live_rows_with_a_stale_heartbeat() -> None:
    now = 1_000_000.0
    stale = now - LOST_AFTER_S - 1
    assert is_lost({"status": "running", "heartbeat_at": stale}, now)
    assert is_lost({"status": "paused", "heartbeat_at": stale}, now)
    assert not is_lost({"status": "running", "heartbeat_at": now - 2}, now)
    assert not is_lost({"status": "interrupted", "heartbeat_at": stale}, now)  # closed properly
    assert shown_status({"status": "completed", "heartbeat_at": stale}, now) == "completed"


@pytest.mark.parametrize(("age", "lost"), [(600.0, True), (1.0, False)])
def test_mc_status_says_lost_and_how_to_resume(tmp_path: Path, age: float, lost: bool) -> None:
    cfg = mission_store(tmp_path, age)
    result = CliRunner().invoke(cli, ["status", "--config", str(cfg)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert ("#1 lost" in result.output) is lost
    assert ("#1 running" in result.output) is not lost
    if lost:
        assert "no heartbeat for 10:00" in result.output
        assert f"mc mission --resume --config {cfg}" in result.output


def test_dashboard_shows_a_lost_mission(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MC_REGISTRY", str(tmp_path / "registry.db"))
    cfg = mission_store(tmp_path, 600.0)
    app = TestClient(create_app(ProjectSource(cfg, Registry()), token=None),
                     base_url="http://127.0.0.1:8780")
    mission = app.get("/api/projects/alpha/snapshot").json()["mission"]
    assert mission["lost"] is True and mission["resume"] == "mc mission --resume"
    listed = app.get("/api/projects").json()
    assert [(p["name"], p["last_status"], p["lost"]) for p in listed] == [("alpha", "lost", True)]
    assert "m.lost" in app.get("/static/live.js").text  # the page shows it
