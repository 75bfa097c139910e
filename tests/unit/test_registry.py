"""The project registry (engine/registry.py) and `mc register` / `unregister` / `projects`,
on real temporary git repositories and real SQLite files."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.config import ConfigError
from engine.registry import (
    DuplicateProject,
    Registry,
    UnknownProject,
    default_registry_path,
)
from engine.store import Store
from mc_tui.cli import cli
from tests.e2e.conftest import git


def make_project(root: Path, name: str, *, target_name: str | None = None) -> Path:
    """A real git repository with a minimal mission-control.toml; returns the config path."""
    repo = root / name
    repo.mkdir(parents=True)
    (repo / "README.md").write_text("hi\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "initial")
    config = repo / "mission-control.toml"
    lines = ["[target]", 'path = "."']
    if target_name:
        lines.append(f'name = "{target_name}"')
    config.write_text("\n".join(lines) + "\n")
    return config


@pytest.fixture()
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Registry:
    monkeypatch.setenv("MC_REGISTRY", str(tmp_path / "data" / "projects.db"))
    return Registry()


def test_location_follows_xdg_and_the_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MC_REGISTRY", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_registry_path() == tmp_path / "xdg" / "mission-control" / "projects.db"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_registry_path() == tmp_path / "home" / ".local/share/mission-control/projects.db"
    monkeypatch.setenv("MC_REGISTRY", str(tmp_path / "r.db"))
    assert default_registry_path() == tmp_path / "r.db"


def test_register_list_unregister(registry: Registry, tmp_path: Path) -> None:
    alpha = make_project(tmp_path, "alpha")
    beta = make_project(tmp_path, "beta-dir", target_name="beta")
    a = registry.register(alpha)
    b = registry.register(beta)
    assert (a.name, b.name) == ("alpha", "beta")  # folder name, then target.name
    assert a.config_path == alpha.resolve()
    assert a.target_path == (tmp_path / "alpha").resolve()
    assert a.store_path == (tmp_path / "alpha" / ".git" / "mc" / "mission.db").resolve()
    assert a.last_mission_id is None and a.last_status is None
    assert [p.name for p in registry.projects()] == ["alpha", "beta"]
    assert registry.unregister("alpha").name == "alpha"
    assert registry.names() == ["beta"]
    assert alpha.exists()  # the project itself is untouched


def test_errors_name_the_problem(registry: Registry, tmp_path: Path) -> None:
    alpha = make_project(tmp_path, "alpha")
    registry.register(alpha)
    with pytest.raises(DuplicateProject, match="named 'alpha' is registered already"):
        registry.register(make_project(tmp_path / "other", "alpha"))
    with pytest.raises(DuplicateProject, match="registered already as 'alpha'"):
        registry.register(alpha, "again")
    with pytest.raises(UnknownProject, match=r"unknown project 'nope' \(registered: alpha\)"):
        registry.unregister("nope")
    bad = make_project(tmp_path, "bad")
    bad.write_text('[target]\npath = "."\n[scheduler.budget]\nmax_per_run_usd = "lots"\n')
    with pytest.raises(ConfigError, match=r"scheduler\.budget\.max_per_run_usd"):
        registry.register(bad)
    assert registry.names() == ["alpha"]


def test_resolve_picks_the_project_a_service_means(registry: Registry, tmp_path: Path) -> None:
    with pytest.raises(UnknownProject, match="no project is registered"):
        registry.resolve()
    alpha = make_project(tmp_path, "alpha")
    registry.register(alpha)
    assert registry.resolve().name == "alpha"  # the only one
    beta = make_project(tmp_path, "beta")
    registry.register(beta)
    with pytest.raises(UnknownProject, match="several projects are registered.*alpha, beta"):
        registry.resolve()
    assert registry.resolve(default_config=beta).name == "beta"
    assert registry.resolve("alpha", default_config=beta).name == "alpha"
    with pytest.raises(UnknownProject, match="is not registered"):
        registry.resolve(default_config=make_project(tmp_path, "gamma"))


def test_last_mission_is_read_live_from_the_store(registry: Registry, tmp_path: Path) -> None:
    project = registry.register(make_project(tmp_path, "alpha"))
    with Store(project.store_path) as store:
        mission = store.insert("missions", {"objective": "o", "status": "running",
                                            "started_at": time.time()})
        listed = registry.projects()[0]
        assert (listed.last_mission_id, listed.last_status) == (mission, "running")
        store.set_status("missions", mission, "completed", ended_at=time.time() + 5)
    listed = registry.get("alpha")
    assert (listed.last_mission_id, listed.last_status) == (mission, "completed")
    assert listed.updated_at > project.updated_at
    # the cache in the registry follows, so a vanished store still shows what was last seen
    project.store_path.unlink()
    cached = registry.get("alpha")
    assert (cached.last_mission_id, cached.last_status) == (mission, "completed")


_REGISTER_ONE = """
import sys
from engine.registry import Registry
Registry().register(sys.argv[1])
"""


def test_concurrent_writers_lose_nothing(registry: Registry, tmp_path: Path) -> None:
    configs = [make_project(tmp_path, f"p{i}") for i in range(6)]
    procs = [subprocess.Popen([sys.executable, "-c", _REGISTER_ONE, str(c)],
                              env={**os.environ}, stderr=subprocess.PIPE, text=True)
             for c in configs]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    assert registry.names() == [f"p{i}" for i in range(6)]


def test_cli_commands(registry: Registry, tmp_path: Path) -> None:
    alpha = make_project(tmp_path, "alpha")
    runner = CliRunner()
    out = runner.invoke(cli, ["projects"])
    assert out.exit_code == 0 and "no project registered yet" in out.output
    out = runner.invoke(cli, ["register", "--config", str(alpha), "--name", "web"])
    assert out.exit_code == 0, out.output
    assert "registered web" in out.output
    out = runner.invoke(cli, ["register", "--config", str(alpha), "--name", "web"])
    assert out.exit_code == 2 and "registered already" in out.output
    with Store(registry.get("web").store_path) as store:
        store.insert("missions", {"objective": "o", "status": "stalled", "started_at": time.time()})
    out = runner.invoke(cli, ["projects"], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    header = next(line for line in out.output.splitlines() if "name" in line)
    for column in ("name", "path", "config", "last mission", "status", "updated"):
        assert column in header
    row = next(line for line in out.output.splitlines() if "web" in line)
    assert str(alpha.parent) in row and "mission-control.toml" in row
    assert "stalled" in row and " 1 " in row
    out = runner.invoke(cli, ["unregister", "nope"])
    assert out.exit_code == 2 and "unknown project 'nope' (registered: web)" in out.output
    bad = make_project(tmp_path, "bad")
    bad.write_text('[target]\npath = "."\nbogus = 1\n')
    out = runner.invoke(cli, ["register", "--config", str(bad)])
    assert out.exit_code == 2 and "target.bogus" in out.output
    out = runner.invoke(cli, ["dashboard", "--project", "nope"])
    assert out.exit_code == 2 and "unknown project 'nope' (registered: web)" in out.output
    out = runner.invoke(cli, ["unregister", "web"])
    assert out.exit_code == 0 and registry.names() == []
