"""The real codex, gemini-cli and aider (pinned, installed by the fixtures) against the
scripted server: each really writes a file through its own tool calls / edit format."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.support.model_server import ModelServer, Rule, text, thinking, turns
from tests.support.real_clis import aider_env, codex_env, gemini_env
from tests.support.scripts import (
    aider_commit_rule,
    aider_create,
    codex_add_file,
    codex_shell,
    gemini_router_rule,
    gemini_shell,
    gemini_write,
)

pytestmark = pytest.mark.slow
PROMPT = "MC-TEST: create hello.py and run it."


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    subprocess.run(["git", "-C", str(path), "-c", "user.name=t", "-c", "user.email=t@x",
                    "commit", "-q", "--allow-empty", "-m", "init"], check=True)
    return path


def jsonl(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def test_real_codex_patches_a_file_and_runs_a_command(codex_cli: str, repo: Path,
                                                      tmp_path: Path) -> None:
    rule = Rule(match="MC-TEST", dialect="openai-responses", reply=turns([
        codex_add_file("hello.py", "print('hi')\n"),
        codex_shell("python3 hello.py"),
        thinking("It printed hi.", text("Created hello.py; it prints hi.")),
    ]))
    with ModelServer([rule]) as server:
        proc = subprocess.run(
            [codex_cli, "exec", "--json", "--skip-git-repo-check", "--sandbox", "workspace-write"],
            input=PROMPT, cwd=repo, env=codex_env(server.url, tmp_path / "home"),
            capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (repo / "hello.py").read_text() == "print('hi')\n"
    events = jsonl(proc.stdout)
    items = [e["item"] for e in events if e["type"] == "item.completed"]
    assert [i["type"] for i in items] == ["file_change", "command_execution", "reasoning",
                                          "agent_message"]
    assert items[1]["aggregated_output"] == "hi\n" and items[1]["exit_code"] == 0
    assert items[-1]["text"] == "Created hello.py; it prints hi."
    usage = next(e for e in events if e["type"] == "turn.completed")["usage"]
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    sent = server.model_requests()
    assert [r.path for r in sent] == ["/v1/responses"] * 3
    assert all(r.body["stream"] for r in sent) and {"exec_command", "apply_patch"} <= set(
        sent[0].view.tools)
    assert [r.view.tool_turns for r in sent] == [0, 1, 2]
    assert sent[0].headers["authorization"] == "<redacted>"
    assert "Success. Updated the following files" in sent[1].view.tool_results[0][1]


def test_real_gemini_writes_a_file_and_runs_a_command(gemini_cli: str, repo: Path,
                                                      tmp_path: Path) -> None:
    rule = Rule(match="MC-TEST", dialect="gemini", reply=turns([
        gemini_write(str(repo / "hello.py"), "print('hi')\n"),
        gemini_shell("python3 hello.py"),
        text("Created hello.py; it prints hi."),
    ]))
    with ModelServer([gemini_router_rule(), rule]) as server:
        proc = subprocess.run(
            [gemini_cli, "-p", "", "-o", "stream-json", "--approval-mode", "yolo",
             "--skip-trust"],
            input=PROMPT, cwd=repo, env=gemini_env(server.url, tmp_path / "home"),
            capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (repo / "hello.py").read_text() == "print('hi')\n"
    events = jsonl(proc.stdout)
    assert [e["tool_name"] for e in events if e["type"] == "tool_use"] == [
        "write_file", "run_shell_command"]
    results = [e for e in events if e["type"] == "tool_result"]
    assert [r["status"] for r in results] == ["success", "success"]
    assert results[1]["output"] == "hi"
    result = events[-1]
    assert result["type"] == "result" and result["status"] == "success"
    assert result["stats"]["tool_calls"] == 2 and result["stats"]["input_tokens"] > 0
    sent = server.model_requests()
    assert sent[0].rule == "gemini-router" and not sent[0].view.stream  # the auto router
    assert all(r.query == "alt=sse" and ":streamGenerateContent" in r.path for r in sent[1:])
    assert [r.view.tool_turns for r in sent[1:]] == [0, 1, 2]
    assert {"write_file", "run_shell_command", "read_file", "replace"} <= set(sent[1].view.tools)
    assert sent[1].headers["x-goog-api-key"] == "<redacted>"


def test_real_aider_applies_a_search_replace_edit(aider_cli: str, repo: Path,
                                                  tmp_path: Path) -> None:
    rules = [aider_commit_rule("feat: add hello.py"),
             Rule(match="MC-TEST", dialect="openai-chat",
                  reply=aider_create("hello.py", "print('hi')\n"))]
    with ModelServer(rules) as server:
        proc = subprocess.run(
            [aider_cli, "--model", "openai/gpt-4.1", "--yes-always", "--message", PROMPT],
            cwd=repo, env=aider_env(server.url, tmp_path / "home"), capture_output=True,
            text=True, timeout=180, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert (repo / "hello.py").read_text() == "print('hi')\n"
    assert "Applied edit to hello.py" in proc.stdout
    assert "Cost:" in proc.stdout  # aider prices the scripted usage itself
    assert "githubusercontent" not in proc.stdout  # no price-list fetch: offline
    log = subprocess.run(["git", "-C", str(repo), "log", "--format=%s"], capture_output=True,
                         text=True, check=True).stdout.splitlines()
    assert log[0] == "feat: add hello.py"  # aider auto-commits with the scripted message
    sent = server.model_requests()
    assert [r.path for r in sent] == ["/v1/chat/completions"] * 2
    assert sent[0].body["stream"] is True and sent[0].model == "gpt-4.1"
    assert sent[1].rule == "aider-commit" and not sent[1].view.stream
