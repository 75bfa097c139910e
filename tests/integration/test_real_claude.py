"""The real Claude Code CLI (pinned, installed by the fixture) against the scripted server.

A scripted worker session must really Write a file and run Bash in a temporary git repository
(outside any ``.git/``), and print a ``result`` line with cost, model usage and denials; the
same session through :class:`engine.agents.claude.ClaudeBackend` must give a completed
:class:`AgentResult` with the CLI's own cost.
"""

from __future__ import annotations

import fnmatch
import os
import subprocess
from pathlib import Path

import anyio
import pytest

from engine.agents.claude import ClaudeBackend
from engine.agents.marker import parse_marker
from engine.agents.process import BACKEND_ENV
from engine.agents.types import COMPLETED, AgentEvent, AgentRequest, AgentRole
from tests.support.model_server import ModelServer, Rule
from tests.support.real_clis import claude_env, run_claude_print
from tests.support.script import turns
from tests.support.scripts import bash, finish, read_file, worker_turns, write_file

HELLO = "def hello():\n    return 'hello'\n"
TEST_HELLO = (
    "import unittest\n\nfrom hello import hello\n\n\n"
    "class T(unittest.TestCase):\n    def test_hello(self):\n"
    "        self.assertEqual(hello(), 'hello')\n"
)
PROMPT = "You are a worker agent of Mission Control.\n## Your unit: Add hello (`u1`)\nDo it."


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    (path / "README.md").write_text("tiny\n")
    return path


def worker_rule() -> Rule:
    return Rule(name="worker", match="You are a worker agent", reply=worker_turns(
        {"hello.py": HELLO, "test_hello.py": TEST_HELLO}, read_first="README.md",
        test_command="python -m unittest -q test_hello"))


def test_real_claude_writes_a_file_and_runs_bash(claude_cli: str, repo: Path,
                                                 tmp_path: Path) -> None:
    with ModelServer([worker_rule()]) as server:
        run = run_claude_print(
            claude_cli, PROMPT, cwd=repo, env=claude_env(server.url, tmp_path / "home"),
            args=["--model", "sonnet", "--max-turns", "10", "--permission-mode", "acceptEdits",
                  "--allowedTools", "Bash(python:*)"],
        )
    assert run.exit_code == 0, run.stderr
    assert (repo / "hello.py").read_text() == HELLO
    assert (repo / "test_hello.py").read_text() == TEST_HELLO
    results = run.tool_results()
    assert len(results) == 4 and not any(r.get("is_error") for r in results), results
    assert "OK" in str(results[-1]["content"]) or "Ran 1 test" in str(results[-1]["content"])
    result = run.result
    assert result["subtype"] == "success" and result["is_error"] is False
    assert result["total_cost_usd"] > 0
    assert result["modelUsage"] and all(m["costUSD"] >= 0 for m in result["modelUsage"].values())
    assert result["permission_denials"] == []
    assert parse_marker(result["result"]).files_changed == ["hello.py", "test_hello.py"]
    # what the CLI sent: the Messages API with streaming, tool results fed back each turn
    sent = server.model_requests()
    assert len(sent) == 5 and all(r.query == "beta=true" and r.body["stream"] for r in sent)
    assert {"Bash", "Read", "Write", "Edit"} <= set(sent[0].view.tools)
    assert [r.view.tool_turns for r in sent] == [0, 1, 2, 3, 4]
    assert sent[0].headers["x-api-key"] == "<redacted>"


def test_real_claude_denies_bash_not_in_allowed_tools(claude_cli: str, repo: Path,
                                                      tmp_path: Path) -> None:
    script = turns([bash("git add -A && git commit -qm x", "Commit"), finish("tried")])
    with ModelServer([Rule(match="commit please", reply=script)]) as server:
        run = run_claude_print(
            claude_cli, "commit please", cwd=repo, env=claude_env(server.url, tmp_path / "home"),
            args=["--model", "sonnet", "--max-turns", "5", "--permission-mode", "acceptEdits",
                  "--allowedTools", "Bash(python:*)"],
        )
    assert run.exit_code == 0, run.stderr
    (denied,) = run.tool_results()
    assert denied["is_error"] is True
    assert [d["tool_name"] for d in run.result["permission_denials"]] == ["Bash"]
    assert run.result["permission_denials"][0]["tool_input"]["command"].startswith("git add")


def test_claude_backend_runs_the_real_cli(claude_cli: str, repo: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    rule = Rule(name="worker", match="You are a worker agent", reply=turns([
        read_file("README.md"),
        write_file("hello.py", HELLO),
        bash("python -c 'import hello; print(hello.hello())'", "Check"),
        finish("Added hello.", ["hello.py"]),
    ]))
    events: list[AgentEvent] = []
    with ModelServer([rule]) as server:
        env = claude_env(server.url, tmp_path / "home")
        for name in list(os.environ):  # no real agent settings or keys from this machine
            if any(fnmatch.fnmatchcase(name, pat) for pat in BACKEND_ENV):
                monkeypatch.delenv(name)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        backend = ClaudeBackend(executable=claude_cli, kill_grace=2)
        request = AgentRequest(role=AgentRole.WORKER, prompt=PROMPT, workdir=repo,
                               model="sonnet", max_turns=10, timeout_s=90,
                               allowed_tools=["Bash(python:*)"])
        result = anyio.run(backend.run, request, events.append)
    assert (repo / "hello.py").read_text() == HELLO
    assert result.status == COMPLETED, (result.error, [e.text for e in events][-5:])
    assert result.cost_usd and result.cost_usd > 0 and not result.cost_estimated
    assert result.turns >= 4 and result.exit_code == 0
    assert result.tokens.input > 0 and result.tokens.output > 0
    assert parse_marker(result.text).summary == "Added hello."
    kinds = [e.type for e in events]
    assert kinds[0] == "init"
    assert [e.tool for e in events if e.type == "tool_use"] == ["Read", "Write", "Bash"]
    bash_result = [e for e in events if e.type == "tool_result" and e.tool == "Bash"]
    assert bash_result and bash_result[0].text.strip() == "hello"
    assert not bash_result[0].data["is_error"]
