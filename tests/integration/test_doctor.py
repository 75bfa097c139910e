"""`mc doctor` on real temporary repositories, with the Claude double and the real CLI."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from engine.config import load_config
from engine.doctor import BACKENDS, MISSING, OK, check_backend, check_repo, run_checks
from tests.support.model_server import ModelServer

FAKES = Path(__file__).resolve().parents[1] / "fakes"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@x",
                    "commit", "-q", "--allow-empty", "-m", "init"], check=True)
    (tmp_path / "mission-control.toml").write_text('[target]\npath = "repo"\n')
    return tmp_path


def doctor(project: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    keep = {k: v for k, v in os.environ.items()
            if k in ("LANG", "TMPDIR", "XDG_CACHE_HOME", "VIRTUAL_ENV")}
    return subprocess.run(
        [sys.executable, "-m", "mc_tui", "doctor", "--config", str(project / "mission-control.toml")],
        capture_output=True, text=True, cwd=project, timeout=60,
        env={**keep, "COLUMNS": "200", "HOME": str(project / "home"), **env},
    )


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_all_ok_with_the_double_and_a_reachable_base_url(project: Path) -> None:
    with ModelServer() as server:
        result = doctor(project, {"PATH": f"{FAKES}{os.pathsep}{os.environ['PATH']}",
                                  "ANTHROPIC_API_KEY": "sk-test-1", "ANTHROPIC_BASE_URL": server.url})
        methods = {r.method for r in server.requests}
    assert result.returncode == 0, result.stdout + result.stderr
    for needle in ("git repository", "base branch", "worktree pool", "2.1.195 (Claude Code)",
                   "logged in (api_key, ANTHROPIC_API_KEY", f"HEAD {server.url}"):
        assert needle in result.stdout, needle
    assert "missing" not in result.stdout
    assert methods == {"HEAD"}  # no model call: nothing spent
    assert "sk-test-1" not in result.stdout


def test_each_missing_piece_is_named_with_its_fix(project: Path, tmp_path: Path) -> None:
    (project / "mission-control.toml").write_text('[target]\npath = "repo"\nbranch = "trunk"\n')
    url = f"http://127.0.0.1:{closed_port()}"
    result = doctor(project, {"PATH": f"{FAKES}{os.pathsep}{os.environ['PATH']}",
                              "ANTHROPIC_BASE_URL": url})
    assert result.returncode == 1
    out = result.stdout
    cfg = load_config(project / "mission-control.toml")
    branch = next(c for c in check_repo(cfg) if c.name == "base branch")
    assert branch.failed and "'trunk' (target.branch) not found" in branch.detail
    assert "local branches: main" in branch.fix and "set target.branch" in branch.fix
    assert "base branch" in out
    assert "not logged in" in out and "ANTHROPIC_API_KEY" in out
    assert "cannot connect to 127.0.0.1" in out and "ANTHROPIC_BASE_URL" in out
    assert "3 required check(s) failed" in result.stderr
    gone = doctor(project, {"PATH": "/usr/bin:/bin", "ANTHROPIC_API_KEY": "k"})
    assert gone.returncode == 1 and "npm install -g @anthropic-ai/claude-code" in gone.stdout


def test_a_pool_inside_git_and_a_missing_repo(project: Path, tmp_path: Path) -> None:
    (project / "mission-control.toml").write_text('[target]\npath = "nowhere"\n')
    result = doctor(project, {"PATH": f"{FAKES}{os.pathsep}{os.environ['PATH']}",
                              "ANTHROPIC_API_KEY": "k"})
    assert result.returncode == 1 and "git repository" in result.stdout
    assert "set target.path to a git repository" in result.stdout
    cfg = load_config(project / "mission-control.toml")
    cfg.target.path = project / "repo"
    cfg.agent.backend = "claude"
    cfg.scheduler.parallel.pool_dir = project / "repo" / ".git" / "mc" / "pool"
    pool = next(c for c in run_checks(cfg, base_env={"PATH": str(FAKES), "HOME": str(tmp_path)})
                if c.name == "worktree pool")
    assert pool.failed and "scheduler.parallel.pool_dir" in pool.fix


@pytest.mark.parametrize("name", ["codex", "gemini", "aider"])
def test_the_other_backends_use_the_same_table(name: str, tmp_path: Path) -> None:
    spec = BACKENDS[name]
    binary = tmp_path / spec.binary
    binary.write_text("#!/bin/sh\necho '9.9.9'\n")
    binary.chmod(0o755)
    env = {"PATH": str(tmp_path), "HOME": str(tmp_path)}
    checks = check_backend(spec, env, probe=lambda url: (True, f"HEAD {url}: HTTP 404"))
    assert [c.status for c in checks] == [OK, MISSING]
    assert "9.9.9" in checks[0].detail and checks[1].fix == spec.login_hint
    env |= {spec.key_env[0]: "k"}
    if spec.base_url_env:  # codex has none: its proxy is a model_providers entry in config.toml
        env |= {spec.base_url_env[0]: "http://127.0.0.1:1"}
    checks = check_backend(spec, env, probe=lambda url: (True, f"HEAD {url}: HTTP 404"))
    assert [c.status for c in checks] == [OK, OK] + [OK] * bool(spec.base_url_env)


def test_with_the_real_claude_cli(claude_cli: str, project: Path) -> None:
    """The real CLI's `--version` and `claude auth status` (no model call)."""
    bindir = str(Path(claude_cli).parent)
    ok = doctor(project, {"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}",
                          "ANTHROPIC_API_KEY": "sk-ant-dummy", "DISABLE_AUTOUPDATER": "1",
                          "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"})
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "(Claude Code)" in ok.stdout and "logged in (api_key" in ok.stdout
    out = doctor(project, {"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}",
                           "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"})
    assert out.returncode == 1 and "not logged in" in out.stdout


def test_doctor_checks_every_host(tmp_path: Path) -> None:
    """A [[hosts]] entry that cannot run agents shows in mc doctor (it passed doctor and failed
    only when the mission started): a warning while another host can run them, else missing."""
    from engine.config import MissionConfig
    from engine.doctor import WARNING, check_host_list

    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    ray = {"kind": "ray", "address": f"127.0.0.1:{port}", "connect_timeout": 2}
    mixed = check_host_list(MissionConfig(hosts=[{"kind": "local"}, ray]))
    assert [c.status for c in mixed] == [OK, WARNING]
    assert "cannot reach the Ray cluster" in mixed[1].detail
    (alone,) = check_host_list(MissionConfig(hosts=[ray]))
    assert alone.status == MISSING and alone.failed
    assert check_host_list(MissionConfig()) == []
