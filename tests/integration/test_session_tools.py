"""Tool synthesis: the per-session MCP server, through the MCP SDK's own client and through
the real Claude Code CLI (pinned, installed by the fixture) against the scripted server."""

from __future__ import annotations

import fnmatch
import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from engine.agents.claude import ClaudeBackend
from engine.agents.process import BACKEND_ENV
from engine.agents.types import COMPLETED, AgentRequest, AgentRole
from engine.services.session_tools import PERMISSION_RULE, write_mcp_config
from engine.store import Store
from engine.strategy.backlog import Backlog
from tests.support.model_server import ModelServer, Rule
from tests.support.real_clis import claude_env
from tests.support.script import tool_use, turns
from tests.support.scripts import finish

VERIFY = f"{sys.executable} -c \"import sys; print('checked ok'); sys.exit(3)\""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    (path / "README.md").write_text("tiny\n")
    return path


def test_sdk_client_runs_verification_and_reports_a_discovery(repo: Path, tmp_path: Path) -> None:
    store_path = tmp_path / "mc.db"
    Store(store_path).close()

    async def main() -> None:
        params = StdioServerParameters(command=sys.executable, args=[
            "-m", "engine.services.session_tools", "--workdir", str(repo), "--verify",
            "pwd && echo out && exit 3", "--store", str(store_path), "--unit", "u7"])
        async with Client(params) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert names == {"run_verification", "report_discovery"}
            run = (await client.call_tool("run_verification", {})).structured_content
            assert run["exit_code"] == 3 and not run["passed"]
            assert run["output"].splitlines() == [str(repo), "out"]  # in the worker's worktree
            added = (await client.call_tool("report_discovery", {
                "title": "Cache the parsed config", "evidence": "app.py:3 parses per call",
                "track": "quality", "impact": 2, "effort": 1})).structured_content
            assert added["created"]
            bad = await client.call_tool("report_discovery", {"title": "x", "evidence": "y",
                                                              "track": "docs"})
            assert bad.is_error and "track" in bad.content[0].text

    anyio.run(main)
    (item,) = Backlog(Store(store_path)).items()
    assert item["title"] == "Cache the parsed config" and item["source"] == "worker"
    assert "reported by unit u7" in item["evidence"]


def test_real_claude_calls_the_session_tools(claude_cli: str, repo: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    store_path = tmp_path / "mc.db"
    Store(store_path).close()
    config = write_mcp_config(tmp_path / "state", repo, VERIFY, timeout=30,
                              store_path=store_path, mission_id=None, unit_id="u1")
    rule = Rule(name="worker", match="You are a worker agent", reply=turns([
        tool_use("mcp__mc__run_verification", {}),
        tool_use("mcp__mc__report_discovery", {"title": "Document the CLI flags",
                                               "evidence": "README.md:1 is one word",
                                               "track": "feature", "impact": 2, "effort": 1}),
        finish("Checked.", []),
    ]))
    with ModelServer([rule]) as server:
        env = claude_env(server.url, tmp_path / "home")
        for name in list(os.environ):
            if any(fnmatch.fnmatchcase(name, pat) for pat in BACKEND_ENV):
                monkeypatch.delenv(name)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        events: list = []
        request = AgentRequest(role=AgentRole.WORKER, prompt="You are a worker agent. Check it.",
                               workdir=repo, model="sonnet", max_turns=10, timeout_s=90,
                               allowed_tools=[PERMISSION_RULE], mcp_config=config)
        result = anyio.run(ClaudeBackend(executable=claude_cli, kill_grace=2).run, request,
                           events.append)
        sent = server.model_requests()
    assert result.status == COMPLETED, (result.error, [e.text for e in events][-5:])
    # Claude Code 2.1 defers MCP tool schemas (ToolSearch); the calls still reach the server
    assert "ToolSearch" in sent[0].view.tools
    results = [e for e in events if e.type == "tool_result"]
    assert len(results) == 2 and not any(e.data.get("is_error") for e in results), \
        [e.text for e in results]
    assert [e.tool for e in results] == ["mcp__mc__run_verification", "mcp__mc__report_discovery"]
    assert results[0].text.startswith('{"exit_code":3,"passed":false,"output":"checked ok')
    (item,) = Backlog(Store(store_path)).items()
    assert item["title"] == "Document the CLI flags" and item["source"] == "worker"
    assert not list(repo.glob("*.json"))  # the config never lands in the worktree


def test_worker_requests_carry_the_session_tools_when_switched_on(repo: Path, tmp_path: Path) -> None:
    import json

    from engine.agents.worker import _request, session_tools_config
    from engine.config import MissionConfig

    off = MissionConfig(target={"path": str(repo)}, state={"dir": str(tmp_path / "st")})
    assert session_tools_config(off, repo, 1, "u1") is None
    on = off.model_copy(update={"agent": off.agent.model_copy(update={"session_tools": True})})
    path = session_tools_config(on, repo, 1, "u1")
    assert path is not None and path.parent == tmp_path / "st" / "session-tools"
    server = json.loads(path.read_text())["mcpServers"]["mc"]
    assert server["args"][:2] == ["-m", "engine.services.session_tools"]
    assert server["args"][server["args"].index("--workdir") + 1] == str(repo)
    request = _request(on, AgentRole.WORKER, "p", repo, {}, mcp_config=path)
    assert PERMISSION_RULE in request.allowed_tools and request.mcp_config == path
    argv = ClaudeBackend().build_argv(request, "claude")
    assert argv[argv.index("--mcp-config") + 1] == str(path) and "--strict-mcp-config" in argv
    read_only = _request(on, AgentRole.ARCHITECT, "p", repo, {}, read_only=True, mcp_config=path)
    assert read_only.mcp_config is None and "--mcp-config" not in ClaudeBackend().build_argv(
        read_only, "claude")
