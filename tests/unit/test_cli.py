"""CLI frame: help, version, init, validate-config, status/history, exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.store import Store
from mc_tui.cli import cli


def run(args: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mc_tui", *args], capture_output=True, text=True, cwd=cwd,
        env={**os.environ, "COLUMNS": "120"},
    )


def test_help_and_version() -> None:
    out = run(["--help"])
    assert out.returncode == 0
    assert "Mission Control" in out.stdout
    for command in ("init", "validate-config", "status", "history"):
        assert command in out.stdout
    version = run(["--version"])
    assert version.returncode == 0 and version.stdout.startswith("mc, version ")


def test_unknown_command_is_usage_error() -> None:
    out = run(["frobnicate"])
    assert out.returncode == 2
    assert "No such command" in out.stderr


def test_init_then_validate(tmp_path: Path) -> None:
    out = run(["init", "--objective", "add tests"], cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "mission-control.toml").exists()
    ok = run(["validate-config"], cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "OK" in ok.stdout and "add tests" in ok.stdout and "workers" in ok.stdout
    again = run(["init"], cwd=tmp_path)
    assert again.returncode == 2
    assert "already exists" in again.stderr
    assert run(["init", "--force"], cwd=tmp_path).returncode == 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[scheduler]\nmodle = 'x'\n", "scheduler.modle: unknown key (did you mean 'model'?)"),
        ("[target\n", "invalid TOML"),
        ("[rounds]\nmax_rounds = 'ten'\n", "rounds.max_rounds"),
        ("[speculation]\nselection = 'fastest'\n", "speculation.selection: Input should be "
         "'best_score', 'tests', 'review' or 'smallest_diff'"),
        ("[speculation]\nunits = 'some'\n", "speculation.units"),
        ("[speculation]\nbranch_count = 9\n", "speculation.branch_count"),
    ],
)
def test_validate_config_errors_exit_2_without_traceback(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    out = run(["validate-config", "--config", str(path)])
    assert out.returncode == 2
    assert expected in out.stderr
    assert "Traceback" not in out.stderr


def test_validate_missing_file(tmp_path: Path) -> None:
    out = run(["validate-config", "--config", str(tmp_path / "none.toml")])
    assert out.returncode == 2
    assert "config file not found" in out.stderr


def test_status_and_history_on_empty_store(tmp_path: Path) -> None:
    (tmp_path / "mission-control.toml").write_text('[target]\npath = "."\n[state]\ndir = "st"\n')
    runner = CliRunner()
    result = runner.invoke(cli, ["status", "--config", str(tmp_path / "mission-control.toml")])
    assert result.exit_code == 0 and "no missions yet" in result.output
    result = runner.invoke(cli, ["history", "--config", str(tmp_path / "mission-control.toml")])
    assert result.exit_code == 0 and "no missions yet" in result.output


def test_status_and_history_show_a_mission(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "160")
    cfg = tmp_path / "mission-control.toml"
    cfg.write_text('[target]\npath = "."\n[state]\ndir = "st"\n')
    store = Store(tmp_path / "st" / "mission.db")
    mid = store.insert(
        "missions", {"objective": "add coverage for auth", "status": "running", "started_at": time.time()}
    )
    now = time.time()
    store.insert("units", {"id": "u-1-1", "mission_id": mid, "title": "Test login", "status": "running",
                           "created_at": now, "updated_at": now})
    store.close()
    runner = CliRunner()
    result = runner.invoke(cli, ["status", "--config", str(cfg)], terminal_width=160)
    assert result.exit_code == 0, result.output
    assert "add coverage for auth" in result.output and "Test login" in result.output
    result = runner.invoke(cli, ["history", "--config", str(cfg)], terminal_width=160)
    assert result.exit_code == 0 and "add coverage" in result.output
