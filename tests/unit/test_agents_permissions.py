"""Permission profiles per role and the recognition of refused tool calls."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.agents.permissions import (
    command_heads,
    denial_message,
    describe_call,
    is_denial_text,
    profile_for,
    worker_rules,
)
from engine.agents.types import AgentRole


@pytest.mark.parametrize(("command", "heads"), [
    ("pytest -q", ["pytest"]),
    ("uv run pytest -q && ruff check .", ["uv run pytest", "ruff"]),
    ("uv run --frozen pytest tests/ -x", ["uv run --frozen pytest"]),
    ("/usr/bin/python3 -m unittest discover -s tests", ["/usr/bin/python3 -m unittest"]),
    ("FOO=1 npm run test -- --ci", ["npm run test"]),
    ("cd sub && cargo test", ["cargo test"]),
    ("npx jest --ci | tail -5", ["npx jest", "tail"]),
    ("make", ["make"]),
    ('echo "unbalanced', []),
])
def test_command_heads(command: str, heads: list[str]) -> None:
    assert command_heads(command) == heads


def test_worker_rules_cover_verification_runner_and_git(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("")
    rules = worker_rules("uv run pytest -q", tmp_path, ["Bash(npm run lint:*)", "Read"])
    assert rules[:5] == ["Read", "Edit", "Write", "Glob", "Grep"]
    assert "Bash(uv run pytest:*)" in rules and "Bash(python -m pytest:*)" in rules
    for git in ("add", "commit", "status", "diff", "log", "show"):
        assert f"Bash(git {git}:*)" in rules
    assert rules[-1] == "Bash(npm run lint:*)" and rules.count("Read") == 1
    assert not any("push" in r for r in rules)


@pytest.mark.parametrize("role", [AgentRole.WORKER, AgentRole.EDITOR, AgentRole.FIXUP])
def test_editing_roles(role: AgentRole) -> None:
    profile = profile_for(role, verification_command="pytest")
    assert profile.mode == "acceptEdits" and "Bash(git commit:*)" in profile.allowed_tools
    opted = profile_for(role, verification_command="pytest", mode_override="bypassPermissions")
    assert opted.bypass and opted.allowed_tools == profile.allowed_tools


@pytest.mark.parametrize("role", [AgentRole.PLANNER, AgentRole.REVIEWER, AgentRole.OBJECTIVE,
                                  AgentRole.ARCHITECT, AgentRole.AMBITION, AgentRole.STRATEGIST])
def test_read_only_roles_stay_in_plan_mode_whatever_the_overrides(role: AgentRole) -> None:
    profile = profile_for(role, verification_command="pytest", mode_override="bypassPermissions",
                          extra_tools=["Bash"])
    assert profile.mode == "plan" and profile.allowed_tools == [] and not profile.bypass


@pytest.mark.parametrize("text", [
    "This command requires approval",
    "This Bash command contains multiple operations. The following parts require approval: "
    "git add -A, git commit -m 'x y'",
    "Claude requested permissions to edit /r/.git/mc/pool/slot-1/a.py which is a sensitive file.",
    "Claude requested permissions to write to /r/new.py, but you haven't granted it yet.",
    "Cannot write to /r/a.txt while in plan mode.",
    "touch in '/r/z' needs approval. The path is inside the working directories",
])
def test_real_refusal_texts_are_denials(text: str) -> None:
    assert is_denial_text(text)


@pytest.mark.parametrize("text", ["Exit code 1\nOn branch main\nnothing to commit",
                                  "Exit code 5\n\nno tests ran in 1.00s", "File not found"])
def test_failed_commands_are_not_denials(text: str) -> None:
    assert not is_denial_text(text)


def test_describe_and_message() -> None:
    assert describe_call("Write", {"file_path": "/r/.git/a.py", "content": "x"}) == "Write /r/.git/a.py"
    assert describe_call("Bash", {"command": "git add -A &&\n git commit -m x"}) == \
        "Bash(git add -A && git commit -m x)"
    assert describe_call("WebFetch", None) == "WebFetch"
    assert denial_message(["a", "b", "a"]) == "agent was denied: a, b"
    assert denial_message([str(i) for i in range(7)], limit=2) == "agent was denied: 0, 1 and 5 more"
