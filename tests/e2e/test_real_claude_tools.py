"""A whole mission through the real Claude Code CLI (pinned, installed by the fixture) with
the session tools of the default config: the planner asks for a unit tool from the
templates, and the scripted worker calls ``mcp__mc__run_verification``, ``mcp__mc__recall``
and that unit's ``mcp__mc__tests_scoped``; what the tools returned is read back from the
requests the CLI sent to the model server, and the mission completes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.learning import episodes
from engine.store import Store
from tests.e2e.conftest import git, run_mc
from tests.e2e.test_real_claude import TEST_BYE, agent_env, project  # noqa: F401  (fixture)
from tests.support.model_server import ModelServer, Rule, Turns
from tests.support.script import ModelRequest, tool_use
from tests.support.scripts import WORKER, MissionUnit, bash, finish, small_mission_rules, write_file

pytestmark = pytest.mark.slow

VERIFY = "python3 -m unittest discover -s tests -t ."
BYE = "def bye(name):\n    return f'bye {name}'\n"
LESSON_REASON = "bye() returned None: a farewell must return the string"


class ToolUnit(MissionUnit):
    """A unit whose plan asks for the ``tests_scoped`` template (scoped to its test file)."""

    def plan_entry(self) -> dict[str, object]:
        return {**super().plan_entry(),
                "tools": [{"name": "tests_scoped", "paths": ["tests/test_bye.py"]}]}


def test_a_mission_whose_worker_uses_the_session_tools(claude_cli: str, project: Path,  # noqa: F811
                                                       tmp_path: Path) -> None:
    store_path = project / ".git" / "mc" / "mission.db"
    with Store(store_path) as store:  # what an earlier mission taught
        episodes.record(store, kind="unit", key="old-1", mission_id=0, unit_id="old-1",
                        objective="Add greetings", title="Add a farewell helper bye",
                        files=["app/bye.py"], outcome="failed", failure_reason=LESSON_REASON,
                        review_feedback="", fixups="", cost_usd=0.0, max_episodes=50)
    unit = ToolUnit("Add a farewell", {"app/bye.py": BYE, "tests/test_bye.py": TEST_BYE})
    worker = Turns([
        write_file("app/bye.py", BYE), write_file("tests/test_bye.py", TEST_BYE),
        tool_use("mcp__mc__run_verification", {}),
        tool_use("mcp__mc__recall", {"query": "farewell bye helper"}),
        tool_use("mcp__mc__tests_scoped", {}),
        bash("git add -A", "Stage"), bash("git commit -q -m 'mc test worker change'", "Commit"),
        finish("Wrote bye and its test.", list(unit.files)),
    ])
    rules = [Rule(name="worker", match=WORKER, reply=worker),
             *small_mission_rules([unit], test_command=None, commit=True)]
    config = tmp_path / "mission-control.toml"
    config.write_text(f'[target]\npath = "repo"\nobjective = "Add bye"\n'
                      f'[target.verification]\ncommand = "{VERIFY}"\n')
    with ModelServer(rules) as server:
        env = agent_env(claude_cli, server.url, tmp_path / "home")
        env["TMPDIR"] = str(tmp_path / "tmp")  # where the sessions' MCP configs go
        (tmp_path / "tmp").mkdir()
        result = run_mc("--no-ui", "--yes", "--config", str(config), cwd=tmp_path,
                        timeout=600, env=env)
        sent = server.model_requests()
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    planner = next(r for r in sent if r.rule == "planner")
    assert "`tests_scoped`" in planner.view.prompt_text  # the planner is offered the templates
    first: ModelRequest = [r for r in sent if r.rule == "worker"][0].view
    # Claude Code puts the server's instructions in the prompt: the worker is told its tools
    assert "Mission Control tools for this work unit" in first.prompt_text
    assert "tests_scoped (run the project's Python test runner" in first.prompt_text
    last: ModelRequest = [r for r in sent if r.rule == "worker"][-1].view
    results = {name: (text, error) for name, text, error in last.tool_results}
    names = [name for name, _, _ in last.tool_results]
    assert names[2:5] == ["mcp__mc__run_verification", "mcp__mc__recall",
                          "mcp__mc__tests_scoped"], names
    assert not any(error for _, error in results.values()), results
    verification = json.loads(results["mcp__mc__run_verification"][0])
    assert verification["passed"] and "Ran 2 tests" in verification["output"]
    recalled = json.loads(results["mcp__mc__recall"][0])
    assert any(LESSON_REASON in e["lesson"] for e in recalled["episodes"]), recalled
    scoped = json.loads(results["mcp__mc__tests_scoped"][0])
    assert scoped["passed"] and scoped["ran"].endswith("-m unittest tests/test_bye.py")
    assert "Ran 1 test" in scoped["output"]  # only the unit's test, not tests/test_greet.py
    assert not list((tmp_path / "tmp").glob("mc-session-tools-*"))  # removed after use
    store = Store(store_path)
    mission = store.latest_mission()
    assert mission["status"] == "completed"
    (leaf,) = [u for u in store.units(mission["id"]) if u["is_leaf"]]
    assert leaf["status"] == "merged"
    assert leaf["tools"] == [{"name": "tests_scoped", "scope": ["tests/test_bye.py"]}]
    assert "app/bye.py" in git(project, "ls-tree", "-r", "--name-only", "mc/green").split()
    attempts = store.rows("attempts", "mission_id = ? AND role = 'worker'", (mission["id"],))
    assert attempts and all(a["error"] is None for a in attempts)
    store.close()
