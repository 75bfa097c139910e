"""The command backend's permission profiles, through the real gemini-cli and codex.

The CLIs are the pinned real ones (session fixtures); the model is the scripted server. A
refused tool call must end up as the unit's failure reason, and a read-only role must not be
able to change the repository.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import anyio
import pytest
from agents_support import git, make_unit

from engine.agents import AgentRequest, AgentRole, CommandBackend, FailureReason, run_unit_agent
from engine.config import MissionConfig
from engine.store import Store
from tests.support.model_server import ModelServer, Rule, auth_error, hang, text, turns
from tests.support.real_clis import codex_env, gemini_env
from tests.support.scripts import WORKER, codex_shell, gemini_shell, gemini_write

pytestmark = pytest.mark.slow


def use_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], cli: str) -> None:
    """The backend builds the agent environment from os.environ: set the CLI's there."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    bin_dir = Path(env["HOME"]) / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    wrapper = bin_dir / Path(cli).name
    wrapper.write_text(f'#!/bin/sh\nexec "{cli}" "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def test_gemini_worker_refused_by_its_policy_fails_as_denied(
    gemini_cli: str, store: Store, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outside = tmp_path / "outside.txt"
    escaped = tmp_path / "escaped.txt"
    worker = turns([gemini_shell("rm -f calc.py", "Delete"),
                    gemini_write(str(outside), "x\n"),
                    # an allowed command, but redirected out of the worktree (auto_edit runs it)
                    gemini_shell(f"git status > {escaped}", "Status"),
                    text("I could not do it.")])  # no marker, no change
    with ModelServer([Rule(name="worker", match=WORKER, reply=worker)]) as server:
        use_env(monkeypatch, gemini_env(server.url, tmp_path / "home"), gemini_cli)
        cfg = MissionConfig()
        cfg.scheduler.model = "gemini-2.5-flash"
        cfg.scheduler.session_timeout = 120
        mission_id, unit = make_unit(store)
        backend = CommandBackend("gemini", kill_grace=1)
        outcome = anyio.run(lambda: run_unit_agent(
            store, backend, config=cfg, mission_id=mission_id, unit=unit,
            objective="Keep calc.", workdir=repo, base_commit=git(repo, "rev-parse", "HEAD")))
    assert (repo / "calc.py").exists() and not outside.exists() and not escaped.exists()
    assert outcome.status == "failed" and outcome.failure_reason == FailureReason.DENIED
    assert outcome.error.startswith(
        f"agent was denied: run_shell_command(rm -f calc.py), write_file {outside}, "
        f"run_shell_command(git status > {escaped})")
    assert "no changes" not in outcome.error
    # the policy let nothing but the profile's prefixes through: the shell tool was offered
    sent = server.model_requests("gemini")
    assert "run_shell_command" in sent[0].view.tools
    assert [err for _, _, err in sent[-1].view.tool_results] == [True, True, True]  # all refused


def test_codex_read_only_role_cannot_write(
    codex_cli: str, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    planner = turns([codex_shell("touch made-by-planner.txt; echo exit=$?"),
                     text('```json\n{"units": []}\n```')])
    with ModelServer([Rule(name="planner", match="You are the planner", reply=planner)]) as server:
        use_env(monkeypatch, codex_env(server.url, tmp_path / "home", model="gpt-5.5"), codex_cli)
        request = AgentRequest(role=AgentRole.PLANNER, prompt="You are the planner. Plan.",
                               workdir=repo, model="gpt-5.5", read_only=True,
                               permission_mode="plan", timeout_s=120)
        result = anyio.run(CommandBackend("codex", kill_grace=1).run, request)
    assert result.status == "completed" and '"units": []' in result.text
    assert not (repo / "made-by-planner.txt").exists()
    assert git(repo, "status", "--porcelain") == ""
    output = server.model_requests()[-1].view.tool_results[0][1]
    assert "exit=1" in output and ("Read-only file system" in output
                                    or "Permission denied" in output)
    assert result.cost_estimated and result.cost_usd and result.cost_usd > 0


def test_codex_worker_refused_by_its_sandbox_fails_as_denied(
    codex_cli: str, store: Store, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """codex prints no --json item for a sandbox-refused command; the rollout names it."""
    worker = turns([codex_shell("git commit -q --allow-empty -m empty"),
                    text("The commit failed.")])  # no marker, no change
    with ModelServer([Rule(name="worker", match=WORKER, reply=worker)]) as server:
        use_env(monkeypatch, codex_env(server.url, tmp_path / "home", model="gpt-5.5"), codex_cli)
        cfg = MissionConfig()
        cfg.scheduler.model = "gpt-5.5"
        cfg.scheduler.session_timeout = 120
        mission_id, unit = make_unit(store)
        outcome = anyio.run(lambda: run_unit_agent(
            store, CommandBackend("codex", kill_grace=1), config=cfg, mission_id=mission_id,
            unit=unit, objective="Commit.", workdir=repo,
            base_commit=git(repo, "rev-parse", "HEAD")))
    assert "Read-only file system" in server.model_requests()[-1].view.tool_results[0][1]
    assert outcome.status == "failed" and outcome.failure_reason == FailureReason.DENIED
    assert outcome.error.startswith("agent was denied: shell(git commit -q --allow-empty -m empty)")


def _env_for(cli_name: str, url: str, home: Path) -> dict[str, str]:
    from tests.support.real_clis import aider_env

    return {"codex": lambda: codex_env(url, home, model="gpt-5.5"),
            "gemini": lambda: gemini_env(url, home), "aider": lambda: aider_env(url, home)}[cli_name]()


MODELS = {"codex": "gpt-5.5", "gemini": "gemini-2.5-flash", "aider": "openai/gpt-4o"}


@pytest.mark.parametrize("name", ["codex", "gemini", "aider"])
def test_a_rejected_api_key_is_an_auth_error(
    name: str, request: pytest.FixtureRequest, repo: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """401 from the API: codex exits 1, gemini 145, aider 0 — each is `auth` (stop the mission)."""
    cli = request.getfixturevalue(f"{name}_cli")
    with ModelServer([Rule(name="deny", fault=auth_error())]) as server:
        use_env(monkeypatch, _env_for(name, server.url, tmp_path / "home"), cli)
        req = AgentRequest(role=AgentRole.PLANNER, prompt="Plan.", workdir=repo,
                           model=MODELS[name], read_only=True, permission_mode="plan",
                           timeout_s=120)
        result = anyio.run(CommandBackend(name, kill_grace=1).run, req)
    assert (result.status, result.failure_reason) == ("error", FailureReason.AUTH), result.error
    assert server.model_requests()


def test_a_model_server_that_never_answers_times_out_and_kills_the_cli(
    codex_cli: str, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ModelServer([Rule(name="hang", fault=hang())]) as server:
        use_env(monkeypatch, codex_env(server.url, tmp_path / "home", model="gpt-5.5"), codex_cli)
        req = AgentRequest(role=AgentRole.PLANNER, prompt="Plan.", workdir=repo, model="gpt-5.5",
                           read_only=True, permission_mode="plan", timeout_s=4)
        started = time.monotonic()
        result = anyio.run(CommandBackend("codex", kill_grace=1).run, req)
    assert (result.status, result.failure_reason) == ("timeout", FailureReason.TIMEOUT)
    assert time.monotonic() - started < 15
