"""The scripted backend: real edits, real commits, real subprocesses, in a real repo."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest
from agents_support import git

from engine.agents import (
    AgentEvent,
    AgentRequest,
    AgentResult,
    AgentRole,
    AgentUnavailable,
    FailureReason,
    ScriptedBackend,
    parse_marker,
)

CASSETTE = r'''
[[interaction]]
role = "worker"
when = { unit_title = "Add subtract*" }
cost_usd = 0.12
input_tokens = 1000
output_tokens = 200
turns = 3
  [[interaction.actions]]
  type = "patch"
  path = "calc.py"
  find = "return a + b\n"
  replace = "return a + b\n\n\ndef subtract(a, b):\n    return a - b\n"
  [[interaction.actions]]
  type = "write"
  path = "tests/test_calc.py"
  content = "from calc import subtract\n\n\ndef test_subtract():\n    assert subtract(3, 1) == 2\n"
  [[interaction.actions]]
  type = "run"
  command = "python3 -c 'import calc; print(calc.subtract(5, 2))'"
  [[interaction.actions]]
  type = "tool"
  tool = "Read"
  input = "calc.py"
  output = "..."
  [[interaction.actions]]
  type = "commit"
  message = "Add subtract ({{unit_id}}, attempt {{attempt}})"
  [[interaction.actions]]
  type = "text"
  text = """Done.
<mc-result>
{"status": "completed", "summary": "subtract for {{unit_id}}", "files_changed": ["calc.py"]}
</mc-result>"""

[[interaction]]
match = "run failing"
  [[interaction.actions]]
  type = "run"
  command = "echo oops; exit 3"

[[interaction]]
match = "run unchecked"
  [[interaction.actions]]
  type = "run"
  command = "exit 3"
  check = false

[[interaction]]
match = "overload me"
cost_usd = 0.01
  [[interaction.actions]]
  type = "sleep"
  seconds = 0.05
  [[interaction.actions]]
  type = "fail"
  error = "API Error: 529 Overloaded."
  reason = "overloaded"
  status = "error"

[[interaction]]
match = "hang"
  [[interaction.actions]]
  type = "hang"

[[interaction]]
match = "escape"
  [[interaction.actions]]
  type = "write"
  path = "../outside.txt"
  content = "no"

[[interaction]]
match = "bad patch"
  [[interaction.actions]]
  type = "patch"
  path = "calc.py"
  find = "not there"
  replace = "x"

[[interaction]]
match = "regex patch"
  [[interaction.actions]]
  type = "patch"
  path = "calc.py"
  regex = true
  count = 0
  find = '^def (\w+)'
  replace = "def calc_\\1"

[[interaction]]
match = "cleanup"
status = "blocked"
summary = "blocked on {{unit_id}}"
  [[interaction.actions]]
  type = "delete"
  path = "calc.py"
'''


def play(repo: Path, tmp_path: Path, prompt: str, timeout: float = 20, **meta: str
         ) -> tuple[AgentResult, list[AgentEvent]]:
    path = tmp_path / "cassette.toml"
    path.write_text(CASSETTE)
    backend = ScriptedBackend(path, kill_grace=0.3)
    backend.check_available()
    events: list[AgentEvent] = []
    request = AgentRequest(role=AgentRole.WORKER, prompt=prompt, workdir=repo, timeout_s=timeout,
                           metadata=meta)

    async def main() -> AgentResult:
        return await backend.run(request, events.append)

    return anyio.run(main), events


def test_worker_entry_edits_runs_and_commits(repo: Path, tmp_path: Path) -> None:
    result, events = play(repo, tmp_path, "anything", unit_title="Add subtract", unit_id="u-7",
                          attempt="2")
    assert result.status == "completed" and result.cost_usd == 0.12 and result.turns == 3
    assert (result.tokens.input, result.tokens.output) == (1000, 200)
    marker = parse_marker(result.text)
    assert marker is not None and marker.summary == "subtract for u-7"
    assert git(repo, "log", "-1", "--format=%s %an") == "Add subtract (u-7, attempt 2) mc-agent"
    assert git(repo, "status", "--porcelain") == ""
    assert "def subtract" in (repo / "calc.py").read_text()
    results = [e for e in events if e.type == "tool_result" and e.tool == "Bash"]
    assert results[0].text == "3"  # the real subprocess ran
    assert [e.type for e in events][0] == "init" and events[-1].type == "usage"


def test_failing_command(repo: Path, tmp_path: Path) -> None:
    result, _ = play(repo, tmp_path, "run failing please")
    assert result.status == "failed" and "exited with 3" in result.error and "oops" in result.error
    ok, _ = play(repo, tmp_path, "run unchecked")
    assert ok.status == "completed"


def test_fail_action_sets_reason(repo: Path, tmp_path: Path) -> None:
    result, _ = play(repo, tmp_path, "overload me")
    assert (result.status, result.failure_reason) == ("error", FailureReason.OVERLOADED)
    assert result.error == "API Error: 529 Overloaded." and result.cost_usd == 0.01


def test_hang_times_out(repo: Path, tmp_path: Path) -> None:
    started = time.monotonic()
    result, _ = play(repo, tmp_path, "hang", timeout=0.5)
    assert time.monotonic() - started < 3
    assert (result.status, result.failure_reason) == ("timeout", FailureReason.TIMEOUT)


def test_paths_stay_inside_the_worktree(repo: Path, tmp_path: Path) -> None:
    result, _ = play(repo, tmp_path, "escape")
    assert result.status == "failed" and "outside the worktree" in result.error
    assert not (repo.parent / "outside.txt").exists()


def test_patch_needs_its_text(repo: Path, tmp_path: Path) -> None:
    result, _ = play(repo, tmp_path, "bad patch")
    assert result.status == "failed" and "not found" in result.error


def test_regex_patch_uses_groups_and_counts(repo: Path, tmp_path: Path) -> None:
    before = (repo / "calc.py").read_text()
    result, _ = play(repo, tmp_path, "regex patch")
    assert result.status == "completed", result.error
    after = (repo / "calc.py").read_text()
    assert after.count("def calc_") == before.count("\ndef ") + before.startswith("def ")
    assert "def calc_add" in after


def test_status_and_summary_override(repo: Path, tmp_path: Path) -> None:
    result, _ = play(repo, tmp_path, "cleanup", unit_id="u-9")
    assert result.status == "blocked" and result.summary == "blocked on u-9"
    assert not (repo / "calc.py").exists()


def test_no_match_and_missing_cassette(repo: Path, tmp_path: Path) -> None:
    result, _ = play(repo, tmp_path, "nothing matches this", unit_id="u-1")
    assert result.status == "error" and result.failure_reason == FailureReason.NOT_FOUND
    assert result.error.startswith("no cassette entry matches role=worker metadata=")
    assert '"unit_id": "u-1"' in result.error
    with pytest.raises(AgentUnavailable, match="not found"):
        ScriptedBackend(tmp_path / "nope.toml").check_available()
    with pytest.raises(AgentUnavailable, match="no cassette configured"):
        ScriptedBackend(None).check_available()
