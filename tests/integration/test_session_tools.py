"""Tool synthesis: the per-session MCP server, through the MCP SDK's own client and through
the real Claude Code CLI (pinned, installed by the fixture) against the scripted server."""

from __future__ import annotations

import fnmatch
import json
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
            assert names == {"run_verification", "report_discovery"}  # no --recall, no --tools
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
    from engine.agents.worker import _request, discard_session_tools, session_tools_config
    from engine.config import MissionConfig

    on = MissionConfig(target={"path": str(repo)}, state={"dir": str(tmp_path / "st")})
    assert on.agent.session_tools  # on by default (docs/learning.md says why)
    off = on.model_copy(update={"agent": on.agent.model_copy(update={"session_tools": False})})
    assert session_tools_config(off, repo, 1, "u1") is None
    other = on.model_copy(update={"agent": on.agent.model_copy(update={"backend": "codex"})})
    assert session_tools_config(other, repo, 1, "u1") is None  # wired for Claude Code only
    unit = {"files_hint": ["app", "tests/test_app.py"], "tools": [
        {"name": "grep_scoped", "scope": ["app"]}, {"name": "tests_scoped", "scope": []}]}
    path = session_tools_config(on, repo, 1, "u1", unit)
    assert path is not None and path.parent.name.startswith("mc-session-tools-")
    assert not path.is_relative_to(repo) and not path.is_relative_to(tmp_path / "st")
    server = json.loads(path.read_text())["mcpServers"]["mc"]
    assert server["args"][:2] == ["-m", "engine.services.session_tools"]
    assert server["args"][server["args"].index("--workdir") + 1] == str(repo)
    args = server["args"]
    assert json.loads(args[args.index("--tools") + 1]) == [
        {"name": "grep_scoped", "scope": ["app"]},
        {"name": "tests_scoped", "scope": ["app", "tests/test_app.py"]}]
    assert json.loads(args[args.index("--recall") + 1]) == {
        "threshold": 0.3, "half_life_days": 30.0, "tokens": 600}
    from engine.agents.placement import running_on

    class SandboxHost:
        kind = "sandbox"

    with running_on(SandboxHost()):  # type: ignore[arg-type]
        assert session_tools_config(on, repo, 1, "u1", unit) is None
    no_memory = on.model_copy(update={"episodic_memory": on.episodic_memory.model_copy(
        update={"enabled": False})})
    assert "--recall" not in json.loads(session_tools_config(
        no_memory, repo, 1, "u1").read_text())["mcpServers"]["mc"]["args"]
    request = _request(on, AgentRole.WORKER, "p", repo, {}, mcp_config=path)
    assert PERMISSION_RULE in request.allowed_tools and request.mcp_config == path
    argv = ClaudeBackend().build_argv(request, "claude")
    assert argv[argv.index("--mcp-config") + 1] == str(path) and "--strict-mcp-config" in argv
    discard_session_tools(path)
    assert not path.parent.exists()
    read_only = _request(on, AgentRole.ARCHITECT, "p", repo, {}, read_only=True, mcp_config=path)
    assert read_only.mcp_config is None and "--mcp-config" not in ClaudeBackend().build_argv(
        read_only, "claude")


# ---------------------------------------------------------------- recall and template tools
def serve(repo: Path, *extra: str) -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=[
        "-m", "engine.services.session_tools", "--workdir", str(repo), "--verify",
        "python3 -m unittest discover -s tests -t .", *extra])


def test_recall_searches_memory_read_only_with_the_planners_ranking(repo: Path,
                                                                     tmp_path: Path) -> None:
    from engine.learning import episodes

    store_path = tmp_path / "mc.db"
    with Store(store_path) as store:
        for key, title, reason in [("u1", "Parse the CSV header", "header row has a BOM"),
                                   ("u2", "Add a logo to the docs", "")]:
            episodes.record(store, kind="unit", key=key, mission_id=1, unit_id=key,
                            objective="o", title=title, files=["app/csv.py"] if key == "u1" else [],
                            outcome="failed" if reason else "merged", failure_reason=reason,
                            review_feedback="", fixups="", cost_usd=0.1, max_episodes=10)
    before = store_path.read_bytes()
    settings = '{"threshold": 0.3, "half_life_days": 30, "tokens": 600}'

    async def main() -> None:
        async with Client(serve(repo, "--store", str(store_path), "--recall", settings)) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert names == {"run_verification", "recall", "report_discovery"}
            hit = (await client.call_tool("recall", {"query": "csv header parsing"})).structured_content
            assert [e["lesson"] for e in hit["episodes"]] == [
                "[failed] Parse the CSV header (files: app/csv.py) failed because: header row has a BOM"]
            assert hit["episodes"][0]["score"] >= 0.3 and hit["episodes"][0]["outcome"] == "failed"
            miss = (await client.call_tool("recall", {"query": "kubernetes helm"})).structured_content
            assert miss == {"episodes": []}
            empty = (await client.call_tool("recall", {"query": "a b"})).structured_content
            assert empty["episodes"] == [] and "no search terms" in empty["note"]
        # a tight budget bounds the answer like the planner's prompt section
        tight = '{"threshold": 0.0, "half_life_days": 0, "tokens": 10}'
        async with Client(serve(repo, "--store", str(store_path), "--recall", tight)) as client:
            out = (await client.call_tool("recall", {"query": "csv header"})).structured_content
            assert out == {"episodes": []}  # one lesson is longer than 40 characters
        # no store yet: says so, creates nothing
        async with Client(serve(repo, "--store", str(tmp_path / "none.db"), "--recall",
                                settings)) as client:
            none = (await client.call_tool("recall", {"query": "csv header"})).structured_content
            assert none == {"episodes": [], "note": "no memory yet"}

    anyio.run(main)
    assert store_path.read_bytes() == before  # read-only: not a byte written
    assert not (tmp_path / "none.db").exists()


@pytest.fixture
def project(repo: Path) -> Path:
    (repo / "app").mkdir()
    (repo / "app" / "__init__.py").write_text("")
    (repo / "app" / "words.py").write_text("def hello(name):\n    return f'hello {name}'\n")
    (repo / "app" / "other.py").write_text("def hello_other():\n    pass\n")
    (repo / "tests").mkdir()
    (repo / "tests" / "__init__.py").write_text("")
    (repo / "tests" / "test_words.py").write_text(
        "import unittest\n\nfrom app.words import hello\n\n\nclass T(unittest.TestCase):\n"
        "    def test_hello(self):\n        self.assertEqual(hello('x'), 'hello x')\n\n"
        "    def test_other(self):\n        self.assertTrue(True)\n")
    (repo / "tests" / "test_broken.py").write_text(
        "import unittest\n\n\nclass B(unittest.TestCase):\n"
        "    def test_fails(self):\n        self.fail('outside the unit')\n")
    outside = repo.parent / "secret.txt"
    outside.write_text("hello from outside\n")
    (repo / "app" / "link.txt").symlink_to(outside)  # a symlink out of the worktree
    return repo


def test_template_tools_are_exactly_the_units_and_stay_in_its_files(project: Path) -> None:
    tools = json.dumps([{"name": "tests_scoped", "scope": ["tests/test_words.py"]},
                        {"name": "grep_scoped", "scope": ["app", "tests/test_words.py"]}])

    async def main() -> None:
        async with Client(serve(project, "--tools", tools)) as client:
            listed = {t.name: t for t in (await client.list_tools()).tools}
            assert set(listed) == {"run_verification", "report_discovery", "tests_scoped",
                                   "grep_scoped"}
            assert "tests/test_words.py" in (listed["tests_scoped"].description or "")
            ran = (await client.call_tool("tests_scoped", {})).structured_content
            # unittest (from the verification command) on the unit's test file only:
            # tests/test_broken.py, which fails, is not run
            assert ran["passed"] and ran["exit_code"] == 0, ran
            assert ran["ran"].endswith("-m unittest tests/test_words.py")
            assert "Ran 2 tests" in ran["output"]
            one = (await client.call_tool("tests_scoped", {"keyword": "test_hello"})).structured_content
            assert "Ran 1 test" in one["output"] and one["passed"]
            out = await client.call_tool("tests_scoped", {"paths": ["tests/test_broken.py"]})
            assert out.is_error and "outside this tool's scope" in out.content[0].text
            bad = await client.call_tool("tests_scoped", {"keyword": "x; rm -rf ."})
            assert bad.is_error and "keyword may hold" in bad.content[0].text
            found = (await client.call_tool("grep_scoped", {"pattern": r"def hello"})).structured_content
            assert found == {"matches": ["app/other.py:1: def hello_other():",
                                         "app/words.py:1: def hello(name):"], "truncated": False}
            narrow = (await client.call_tool("grep_scoped", {"pattern": "HELLO", "ignore_case": True,
                                                             "paths": ["app/words.py"]})).structured_content
            assert narrow["matches"] == ["app/words.py:1: def hello(name):",
                                         "app/words.py:2:     return f'hello {name}'"]
            linked = (await client.call_tool("grep_scoped", {"pattern": "from outside"})).structured_content
            assert linked["matches"] == []  # app/link.txt points out of the worktree: skipped
            escape = await client.call_tool("grep_scoped", {"pattern": "x", "paths": ["../secret.txt"]})
            assert escape.is_error and "leaves the repository" in escape.content[0].text
            regex = await client.call_tool("grep_scoped", {"pattern": "("})
            assert regex.is_error and "bad regular expression" in regex.content[0].text

    anyio.run(main)


def test_an_unknown_template_stops_the_server_with_the_reason(repo: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "engine.services.session_tools", "--workdir",
                           str(repo), "--tools", '[{"name": "shell", "scope": ["a"]}]'],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2
    assert "session tools: unknown tool template 'shell'" in proc.stderr


def test_real_claude_runs_the_session_when_the_tools_server_cannot_start(
        claude_cli: str, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Default-on is safe: a server that exits at start (here: an unknown template) leaves
    the session without mc's tools, not without a session."""
    config = write_mcp_config(tmp_path / "state", repo, VERIFY, timeout=30, store_path=None,
                              mission_id=None, unit_id="u1",
                              tools=[{"name": "shell", "scope": ["README.md"]}])
    rule = Rule(name="worker", match="You are a worker agent", reply=turns([
        tool_use("mcp__mc__run_verification", {}), finish("Done anyway.", [])]))
    with ModelServer([rule]) as server:
        for name in list(os.environ):
            if any(fnmatch.fnmatchcase(name, pat) for pat in BACKEND_ENV):
                monkeypatch.delenv(name)
        for key, value in claude_env(server.url, tmp_path / "home").items():
            monkeypatch.setenv(key, value)
        events: list = []
        request = AgentRequest(role=AgentRole.WORKER, prompt="You are a worker agent. Go.",
                               workdir=repo, model="sonnet", max_turns=5, timeout_s=90,
                               allowed_tools=[PERMISSION_RULE], mcp_config=config)
        result = anyio.run(ClaudeBackend(executable=claude_cli, kill_grace=2).run, request,
                           events.append)
        sent = server.model_requests()
    assert result.status == COMPLETED, (result.error, [e.text for e in events][-5:])
    (name, text, is_error), = sent[-1].view.tool_results
    assert is_error and "mcp__mc__run_verification" in name, (name, text)
