"""`mc memory list | search | forget` on a real store."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.learning import episodes
from engine.store import Store
from mc_tui.cli import cli


@pytest.fixture
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("COLUMNS", "200")
    path = tmp_path / "mission-control.toml"
    path.write_text('[target]\npath = "."\n[state]\ndir = "st"\n')
    store = Store(tmp_path / "st" / "mission.db")
    for key, title, reason in [("u-1", "Add retry to the HTTP client", "missing SPDX header"),
                               ("u-2", "Document the CLI flags", "")]:
        episodes.record(store, kind="unit", key=key, mission_id=1, unit_id=key,
                        objective="Improve things", title=title, files=[], outcome="failed",
                        failure_reason=reason, review_feedback="", fixups="", cost_usd=0.5,
                        max_episodes=10)
    store.close()
    return path


def test_list_search_forget(cfg: Path) -> None:
    runner = CliRunner()
    out = runner.invoke(cli, ["memory", "list", "--config", str(cfg)])
    assert out.exit_code == 0, out.output
    assert "unit:u-1" in out.output and "unit:u-2" in out.output and "$0.50" in out.output

    out = runner.invoke(cli, ["memory", "search", "HTTP client retry", "--config", str(cfg)])
    assert out.exit_code == 0, out.output
    assert "unit:u-1" in out.output and "SPDX" in out.output and "unit:u-2" not in out.output

    out = runner.invoke(cli, ["memory", "forget", "unit:u-1", "--config", str(cfg)])
    assert out.exit_code == 0 and "forgot 1" in out.output
    out = runner.invoke(cli, ["memory", "forget", "unit:u-1", "--config", str(cfg)])
    assert out.exit_code == 1 and "no episode" in out.output
    out = runner.invoke(cli, ["memory", "forget", "--config", str(cfg)])
    assert out.exit_code == 2
    out = runner.invoke(cli, ["memory", "forget", "--all", "--config", str(cfg)])
    assert out.exit_code == 0 and "forgot 1" in out.output
    out = runner.invoke(cli, ["memory", "list", "--config", str(cfg)])
    assert "no episodes" in out.output


def test_no_store_yet(tmp_path: Path) -> None:
    cfg = tmp_path / "mission-control.toml"
    cfg.write_text('[target]\npath = "."\n')
    out = CliRunner().invoke(cli, ["memory", "search", "anything", "--config", str(cfg)])
    assert out.exit_code == 0 and "no episodes" in out.output
