"""Per-unit tool templates: what the planner may request, checked against the unit's files;
the planner prompt offers them; the permission profile allows the session's MCP server."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from engine.agents.permissions import mcp_rule, profile_for
from engine.agents.tool_templates import (
    TEMPLATES,
    ToolRequestError,
    check_keyword,
    python_test_runner,
    resolve_requests,
)
from engine.agents.types import AgentRole
from engine.planning.schema import PlanNode
from tests.unit.test_planning_planner import RoutedAsk, answer, plan, unit

HINTS = ["app/words.py", "tests/test_words.py", "src/api/*.py"]


def test_a_bare_name_is_scoped_to_every_hint_and_paths_narrow_it() -> None:
    tools = resolve_requests(["grep_scoped", {"name": "tests_scoped",
                                              "paths": ["./tests/test_words.py"]}], HINTS)
    assert tools == [{"name": "grep_scoped", "scope": ["app/words.py", "tests/test_words.py",
                                                       "src/api"]},
                     {"name": "tests_scoped", "scope": ["tests/test_words.py"]}]
    # a path under a directory hint is in scope; the resolved form validates to itself
    assert resolve_requests([{"name": "grep_scoped", "paths": ["src/api/v1.py"]}],
                            HINTS)[0]["scope"] == ["src/api/v1.py"]
    assert resolve_requests(tools, HINTS) == tools


@pytest.mark.parametrize(("request_", "hints", "reason"), [
    ("shell", HINTS, "unknown tool template 'shell'; use one of: grep_scoped, tests_scoped"),
    ({"command": "rm -rf /"}, HINTS, "unknown tool template ''"),
    ({"name": "grep_scoped", "paths": ["app/other.py"]}, HINTS,
     "path 'app/other.py' is not among the unit's files_hint"),
    ({"name": "grep_scoped", "paths": ["../outside"]}, HINTS, "leaves the repository"),
    ({"name": "grep_scoped", "paths": ["/etc/passwd"]}, HINTS, "not among the unit's files_hint"),
    ("tests_scoped", [], "the unit names none"),
    ("tests_scoped", ["."], "the unit names none"),  # the whole repository is no scope
    (42, HINTS, "a tool is a template name or an object"),
])
def test_requests_outside_the_templates_or_the_units_files_are_refused(
        request_: object, hints: list[str], reason: str) -> None:
    with pytest.raises(ToolRequestError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        resolve_requests([request_], hints)


def test_a_tool_requested_twice_is_refused() -> None:
    with pytest.raises(ToolRequestError, match="requested twice"):
        resolve_requests(["grep_scoped", "grep_scoped"], HINTS)


def test_plan_node_resolves_tools_and_rejects_unknown_ones() -> None:
    node = PlanNode(title="t", files_hint=["app"], tools="grep_scoped")
    assert node.tools == [{"name": "grep_scoped", "scope": ["app"]}]
    assert PlanNode(title="t").tools == []
    with pytest.raises(ValidationError, match="unknown tool template 'pytest_all'"):
        PlanNode(title="t", files_hint=["app"], tools=["pytest_all"])


def test_the_planner_is_told_the_templates_and_a_bad_request_goes_back() -> None:
    bad = answer(unit("A", files_hint=["a.py"], tools=["run_anything"]))
    good = answer(unit("A", files_hint=["a.py", "tests/test_a.py"],
                       tools=[{"name": "tests_scoped", "paths": ["tests/test_a.py"]}]))
    ask = RoutedAsk({None: [bad, good]})
    tree = plan(ask, tools=True)
    assert tree.get("1").as_row()["tools"] == [{"name": "tests_scoped",
                                                "scope": ["tests/test_a.py"]}]
    assert tree.tree_text() == "└─ 1. A  (a.py, tests/test_a.py)  [tools: tests_scoped]"
    assert "   tool: tests_scoped (tests/test_a.py)" in tree.outline()
    first, second = ask.prompts_for(None)
    assert all(f"`{name}`" in first for name in TEMPLATES) and "`tools` (optional)" in first
    assert "unknown tool template 'run_anything'" in second
    # without session tools the planner is not offered them
    quiet = RoutedAsk({None: [answer(unit("A"))]})
    plan(quiet)
    assert "`tools`" not in quiet.prompts_for(None)[0] and "grep_scoped" not in quiet.prompts_for(None)[0]


@pytest.mark.parametrize(("verify", "runner"), [
    ("uv run pytest -q && ruff check .", ["uv", "run", "pytest"]),
    ("python3 -m unittest discover -s tests -t .", ["python3", "-m", "unittest"]),
    ("PYTHONPATH=src python -m pytest -x", ["python", "-m", "pytest"]),
    ("make check", ["python3", "-m", "pytest"]),
    (".venv/bin/pytest tests", [".venv/bin/pytest"]),
])
def test_the_test_runner_comes_from_the_verification_command(verify: str,
                                                             runner: list[str]) -> None:
    assert python_test_runner(verify) == runner


@pytest.mark.parametrize("bad", ["-x", "a; rm -rf /", "$(id)", "x" * 201, "a|b"])
def test_keywords_are_names_only(bad: str) -> None:
    with pytest.raises(ToolRequestError):
        check_keyword(bad)
    assert check_keyword(" words and not (slow) ") == "words and not (slow)"


def test_editing_roles_allow_the_sessions_mcp_server_and_read_only_roles_do_not() -> None:
    for role in (AgentRole.WORKER, AgentRole.EDITOR, AgentRole.FIXUP):
        rules = profile_for(role, verification_command="pytest", mcp_servers=["mc"]).allowed_tools
        assert rules.count("mcp__mc") == 1 and mcp_rule("mc") == "mcp__mc"
        assert "mcp__mc" not in profile_for(role, verification_command="pytest").allowed_tools
    for role in (AgentRole.PLANNER, AgentRole.REVIEWER, AgentRole.ARCHITECT):
        assert profile_for(role, verification_command="pytest",
                           mcp_servers=["mc"]).allowed_tools == []


def test_a_files_hint_outside_the_repository_fails_no_plan_without_tools() -> None:
    """Such hints were accepted before tool templates existed; only tool paths are checked."""
    from engine.planning.schema import PlanNode

    node = PlanNode(title="x", files_hint=["../shared/x.py", "app/a.py"], acceptance_criteria=["ok"])
    assert node.tools == []
    with_tool = PlanNode(title="x", files_hint=["../shared/x.py", "app/a.py"],
                         acceptance_criteria=["ok"], tools=["grep_scoped"])
    assert with_tool.tools == [{"name": "grep_scoped", "scope": ["app/a.py"]}]


def test_grep_scoped_skips_what_is_not_a_regular_file(tmp_path: Path) -> None:
    """A FIFO in the scope would block the server forever on read."""
    import os
    import threading

    from engine.services.session_tools import grep_scoped

    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "a.py").write_text("needle = 1\n")
    os.mkfifo(tmp_path / "app" / "pipe")
    result: dict = {}
    worker = threading.Thread(target=lambda: result.update(grep_scoped(tmp_path, ["app"], "needle")),
                              daemon=True)
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), "grep_scoped hung on a FIFO"
    assert [m.split(":")[0] for m in result["matches"]] == ["app/a.py"]


def test_tests_scoped_passes_a_dash_named_file_as_a_path(tmp_path: Path) -> None:
    from engine.services.session_tools import tests_scoped

    (tmp_path / "-k_test.py").write_text("def test_ok():\n    assert True\n")
    done = tests_scoped(tmp_path, "python -m pytest -q", ["-k_test.py"], timeout=60)
    assert done["ran"].endswith(" ./-k_test.py")
