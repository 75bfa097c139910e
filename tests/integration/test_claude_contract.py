"""Contract: the same refused session through the real Claude Code and through the double
(`tests/fakes/claude`) gives mc the same record: status, denials, error, refusal texts.

The session writes one file in the worktree, one under `.git/` (refused: "a sensitive file")
and commits with `git add -A && git commit` without a Bash rule (refused: "requires
approval"). If the real CLI changes these rules, this test says so, and the double follows.
"""

from __future__ import annotations

import fnmatch
import json
import os
import subprocess
from pathlib import Path

import anyio
import pytest

from engine.agents.claude import ClaudeBackend
from engine.agents.process import BACKEND_ENV
from engine.agents.types import AgentEvent, AgentRequest, AgentResult, AgentRole
from tests.support.model_server import ModelServer, Rule
from tests.support.real_clis import claude_env
from tests.support.script import turns
from tests.support.scripts import bash, finish, write_file

FAKES = Path(__file__).resolve().parents[1] / "fakes"
COMMIT = "git add -A && git commit -q -m 'Add a'"


def make_repo(path: Path) -> Path:
    path.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    return path


def run(backend: ClaudeBackend, repo: Path) -> tuple[AgentResult, list[AgentEvent]]:
    events: list[AgentEvent] = []
    request = AgentRequest(role=AgentRole.WORKER, prompt="Add a.", workdir=repo, timeout_s=90,
                           max_turns=10, allowed_tools=["Read", "Edit", "Write"])
    return anyio.run(backend.run, request, events.append), events


def record(result: AgentResult, events: list[AgentEvent], repo: Path) -> dict[str, object]:
    """What mc keeps of a session, with the worktree path made relative."""
    def rel(text: str) -> str:
        return text.replace(str(repo), "<wt>")

    return {
        "status": result.status, "failure_reason": result.failure_reason,
        "denials": [rel(d) for d in result.denials], "error": rel(result.error or ""),
        "refusals": [rel(e.text.split(" (file state")[0]) for e in events
                     if e.type == "tool_result" and e.data.get("is_error")],
        "wrote": (repo / "a.py").exists(), "wrote_git": (repo / ".git" / "x.py").exists(),
        "cost_reported": result.cost_usd is not None and not result.cost_estimated,
    }


def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if any(fnmatch.fnmatchcase(name, pat) for pat in BACKEND_ENV):
            monkeypatch.delenv(name)


def test_real_cli_and_double_record_the_same_refusals(claude_cli: str, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    clean_env(monkeypatch)
    real_repo = make_repo(tmp_path / "real")
    script = turns([write_file("a.py", "x = 1\n"), write_file(".git/x.py", "y\n"),
                    bash(COMMIT, "Commit"), finish("Done.", ["a.py"])])
    with ModelServer([Rule(match="Add a", reply=script)]) as server, monkeypatch.context() as m:
        for key, value in claude_env(server.url, tmp_path / "home").items():
            m.setenv(key, value)
        real = record(*run(ClaudeBackend(executable=claude_cli, kill_grace=2), real_repo),
                      real_repo)

    fake_repo = make_repo(tmp_path / "fake")
    monkeypatch.setenv("PATH", f"{FAKES}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_CLAUDE_EDITS", json.dumps([{"path": "a.py", "content": "x = 1\n"},
                                                        {"path": ".git/x.py", "content": "y\n"}]))
    monkeypatch.setenv("FAKE_CLAUDE_COMMIT", "Add a")
    fake = record(*run(ClaudeBackend(env_passthrough=["FAKE_CLAUDE_*"], kill_grace=1), fake_repo),
                  fake_repo)

    assert real == fake
    assert real["denials"] == ["Write <wt>/.git/x.py", f"Bash({COMMIT})"]
    assert real["refusals"] == [
        "Claude requested permissions to edit <wt>/.git/x.py which is a sensitive file.",
        "This Bash command contains multiple operations. The following parts require approval: "
        "git add -A, git commit -q -m 'Add a'",
    ]
