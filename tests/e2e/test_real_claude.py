"""Whole missions through the real Claude Code CLI (pinned, installed by the fixture),
offline against the scripted Messages API of ``tests/support/model_server.py``.

The config is the default one apart from the backend's base URL (``ANTHROPIC_BASE_URL``),
the objective and the verification command: the workers' permission profile, the worktree
pool outside ``.git`` and plan mode for the read-only roles are what make it work. Before
them (pool under ``.git/mc/pool``, no Bash rules) every worker was refused: the second test
keeps that case, and checks the refusal is the unit's reason.
"""

from __future__ import annotations

import fnmatch
import json
import os
import time
from pathlib import Path

import anyio
import pytest

from engine.agents import ClaudeBackend, FailureReason, run_unit_agent
from engine.agents.process import BACKEND_ENV
from engine.config import MissionConfig, load_config
from engine.controller import Controller
from engine.store import Store
from mc_tui.app import MissionControlApp
from tests.e2e.conftest import git, make_target, run_mc
from tests.support.model_server import ModelServer, Rule, Turns
from tests.support.real_clis import claude_env
from tests.support.scripts import (
    FIXUP,
    MissionUnit,
    bash,
    finish,
    small_mission_rules,
    workdir_of,
    write_file,
)
from tests.tui.conftest import screen_text

pytestmark = pytest.mark.slow

VERIFY = "python3 -m unittest discover -s tests -t ."
TEST_CMD = "python3 -m unittest discover -s tests -t . -q"
BYE = "def bye(name):\n    return f'bye {name}'\n"
TEST_BYE = ("import unittest\n\nfrom app.bye import bye\n\n\nclass ByeTest(unittest.TestCase):\n"
            "    def test_bye(self):\n        self.assertEqual(bye('x'), 'bye x')\n")
SHOUT = "def shout(s):\n    return s.upper() + '!'\n"
TEST_SHOUT = ("import unittest\n\nfrom app.shout import shout\n\n\n"
              "class ShoutTest(unittest.TestCase):\n"
              "    def test_shout(self):\n        self.assertEqual(shout('a'), 'A!')\n")
UNITS = [MissionUnit("Add a farewell", {"app/bye.py": BYE, "tests/test_bye.py": TEST_BYE}),
         MissionUnit("Add a shout", {"app/shout.py": SHOUT, "tests/test_shout.py": TEST_SHOUT})]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    repo = make_target(tmp_path)
    git(repo, "config", "user.name", "Dev")  # the agents commit as the repo's user
    git(repo, "config", "user.email", "dev@example.invalid")
    (repo / ".gitignore").write_text("__pycache__/\n")  # the agents run the tests
    git(repo, "add", ".gitignore")
    git(repo, "commit", "-q", "-m", "ignore bytecode")
    return repo


def agent_env(claude_cli: str, url: str, home: Path) -> dict[str, str]:
    env = claude_env(url, home)
    env["PATH"] = f"{Path(claude_cli).parent}{os.pathsep}{env['PATH']}"
    return env


def test_a_mission_through_the_real_claude_code(claude_cli: str, project: Path,
                                                tmp_path: Path) -> None:
    config = tmp_path / "mission-control.toml"
    config.write_text(f'[target]\npath = "repo"\nobjective = "Add bye and shout"\n'
                      f'[target.verification]\ncommand = "{VERIFY}"\n')
    with ModelServer(small_mission_rules(UNITS, test_command=TEST_CMD, commit=True)) as server:
        env = agent_env(claude_cli, server.url, tmp_path / "home")
        result = run_mc("--no-ui", "--yes", "--config", str(config), cwd=tmp_path,
                        timeout=600, env=env)
        sent = server.model_requests()
    roles = [r.rule for r in sent]
    workdirs = {workdir_of(r.view) for r in sent}
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    store = Store(project / ".git" / "mc" / "mission.db")
    mission = store.latest_mission()
    assert mission["status"] == "completed"
    units = [u for u in store.units(mission["id"]) if u["is_leaf"]]
    assert sorted(u["status"] for u in units) == ["merged", "merged"]
    files = git(project, "ls-tree", "-r", "--name-only", "mc/green").split()
    assert {"app/bye.py", "app/shout.py", "tests/test_bye.py", "tests/test_shout.py"} <= set(files)
    # the workers' own Bash `git commit` went through (the profile allows it): their commits
    # are by the repo's user, not mc's "mc-agent" leftovers commit
    authors = git(project, "log", "--format=%an %s", "mc/green").splitlines()
    assert sum(a.startswith("Dev mc test worker change") for a in authors) == 2, authors
    # every role went through the real CLI
    assert {"planner", "ambition", "worker", "reviewer", "objective"} <= set(roles), roles
    # the CLI's own total_cost_usd per session, per model, never estimated
    attempts = store.rows("attempts", "mission_id = ?", (mission["id"],))
    assert attempts and all(a["status"] == "completed" and a["error"] is None for a in attempts)
    costs = store.query("SELECT role, model, usd, estimated FROM costs")
    assert costs and all(c["usd"] > 0 and not c["estimated"] for c in costs)
    assert sum(c["usd"] for c in costs) == pytest.approx(sum(a["cost_usd"] for a in attempts))
    # every session ran in a worktree of the pool in the user's cache dir, none under .git
    pools = Path(env["XDG_CACHE_HOME"]) / "mission-control" / "pools"
    assert workdirs and all(w and Path(w).is_relative_to(pools) for w in workdirs), workdirs
    store.close()


WORDS_BYE = "def bye(name):\n    return f'bye {name}'\n"
WORDS_HELLO = "def hello(name):\n    return f'hello {name}'\n"
WORDS_BOTH = WORDS_BYE + "\n\n" + WORDS_HELLO
TEST_HELLO = ("import unittest\n\nfrom app.words import hello\n\n\n"
              "class HelloTest(unittest.TestCase):\n"
              "    def test_hello(self):\n        self.assertEqual(hello('x'), 'hello x')\n")
TEST_WORDS_BYE = TEST_BYE.replace("app.bye", "app.words")
BUGGY_SHOUT = "def shout(s):\n    return s.upper()\n"  # the test wants 'A!'


class HintedUnit(MissionUnit):
    """A unit whose plan names only its test file: the planner's overlap check cannot see
    that two units both add app/words.py, so they run in parallel and conflict."""

    def plan_entry(self) -> dict[str, object]:
        return {**super().plan_entry(), "files_hint": [p for p in self.files if "test" in p]}


def test_conflict_and_failing_verification_are_fixed_by_real_fixup_agents(
    claude_cli: str, project: Path, tmp_path: Path
) -> None:
    """Two units add app/words.py (an add/add conflict for whichever merges second) and one
    unit's code fails its own test: each goes to N-of-M fixup, whose real Claude Code agents
    Write the fix, run the tests and commit through Bash; everything lands on mc/green."""
    units = [
        HintedUnit("Add bye", {"app/words.py": WORDS_BYE, "tests/test_bye.py": TEST_WORDS_BYE}),
        HintedUnit("Add hello", {"app/words.py": WORDS_HELLO, "tests/test_hello.py": TEST_HELLO}),
        MissionUnit("Add a shout", {"app/shout.py": BUGGY_SHOUT, "tests/test_shout.py": TEST_SHOUT}),
    ]

    def fixup_session(request):  # type: ignore[no-untyped-def]
        fix = ("app/shout.py", SHOUT) if "## The unit: Add a shout" in request.prompt_text else \
            ("app/words.py", WORDS_BOTH)
        return Turns([write_file(*fix), bash(TEST_CMD, "Run the tests"),
                      bash("git add -A && git commit -q -m 'fixup: resolve'", "Commit"),
                      finish("Fixed.", [fix[0]])])(request)

    rules = [Rule(name="fixup", match=FIXUP, reply=fixup_session),
             *small_mission_rules(units, test_command=TEST_CMD, commit=True)]
    config = tmp_path / "mission-control.toml"
    config.write_text(f'[target]\npath = "repo"\nobjective = "Add words and shout"\n'
                      f'[target.verification]\ncommand = "{VERIFY}"\n')
    with ModelServer(rules) as server:
        env = agent_env(claude_cli, server.url, tmp_path / "home")
        result = run_mc("--no-ui", "--yes", "--config", str(config), cwd=tmp_path,
                        timeout=600, env=env)
        fixups = [r for r in server.model_requests() if r.rule == "fixup"]
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    store = Store(project / ".git" / "mc" / "mission.db")
    mission = store.latest_mission()
    assert mission["status"] == "completed"
    assert sorted(u["status"] for u in store.units(mission["id"]) if u["is_leaf"]) == ["merged"] * 3
    merges = store.rows("merges", "mission_id = ?", (mission["id"],))
    # found by the merge queue, or before it (precheck, on by default: the unit's own
    # worktree fails; the test merge onto mc/green when its agent is done: engine/checks.py)
    to_fixup = [e.payload.get("reason") or "" for e in store.events_after(0)
                if e.kind == "unit.status" and e.payload.get("to") == "fixup"]
    assert any(m["status"] == "conflict" for m in merges) or any(
        "conflict in" in r for r in to_fixup), ([m["status"] for m in merges], to_fixup)
    assert any(m["status"] == "failed" for m in merges) or any(
        r.startswith("verification failed in the unit's worktree") for r in to_fixup), (
        [m["status"] for m in merges], to_fixup)
    winners = [e for e in store.events_after(0) if e.kind == "fixup.winner"]
    assert len(winners) >= 2 and fixups
    assert git(project, "show", "mc/green:app/words.py") == WORDS_BOTH.strip()
    assert git(project, "show", "mc/green:app/shout.py") == SHOUT.strip()
    fixup_attempts = store.rows("attempts", "role = 'fixup'")
    assert fixup_attempts and all(a["error"] is None for a in fixup_attempts)
    store.close()


def test_a_worker_in_a_worktree_under_git_is_reported_as_denied(
    claude_cli: str, project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The old default pool (<git dir>/mc/pool): the real CLI refuses the worker's Write as
    "a sensitive file" and still ends `success`, exit 0. The unit fails as `denied`, with
    the refused call named, not as "no changes"."""
    inside = project / ".git" / "mc" / "pool" / "slot-0"
    git(project, "worktree", "add", "-q", "--detach", str(inside))
    with ModelServer(small_mission_rules(UNITS[:1], test_command=None)) as server:
        for key, value in agent_env(claude_cli, server.url, tmp_path / "home").items():
            monkeypatch.setenv(key, value)
        store = Store(tmp_path / "state" / "mission.db")
        mission_id = store.insert("missions", {"objective": "o", "status": "running",
                                               "started_at": 0.0})
        store.insert("units", {"id": "u1", "mission_id": mission_id, "title": UNITS[0].title,
                               "description": "d", "status": "running", "attempt_count": 1,
                               "created_at": 0.0, "updated_at": 0.0})
        config = MissionConfig()
        config.target.verification.command = VERIFY
        config.scheduler.session_timeout = 120

        async def main():  # type: ignore[no-untyped-def]
            return await run_unit_agent(
                store, ClaudeBackend(kill_grace=2), config=config, mission_id=mission_id,
                unit=store.get("units", "u1"), objective="o", workdir=inside,
                base_commit=git(project, "rev-parse", "HEAD"), slot=0)

        outcome = anyio.run(main)
    assert outcome.status == "failed" and outcome.failure_reason == FailureReason.DENIED
    assert outcome.error.startswith(f"agent was denied: Write {inside}/app/bye.py")
    assert "no changes" not in outcome.error and outcome.commits == 0
    refused = [json.loads(r["payload"]) for r in store.query(
        "SELECT payload FROM events WHERE kind = 'agent.event'")]
    assert any("which is a sensitive file" in (p.get("text") or "") for p in refused)
    store.close()


@pytest.mark.anyio
async def test_a_two_pass_mission_in_the_tui(claude_cli: str, project: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The TUI hosts the engine; `[agent] two_pass = true`: a read-only architect (plan mode)
    then an editor that writes, tests and commits, all through the real CLI."""
    config_path = tmp_path / "mission-control.toml"
    config_path.write_text(f'[target]\npath = "repo"\nobjective = "Add bye"\n'
                           f'[target.verification]\ncommand = "{VERIFY}"\n'
                           "[agent]\ntwo_pass = true\n")
    with ModelServer(small_mission_rules(UNITS[:1], test_command=TEST_CMD, commit=True)) as server:
        for name in list(os.environ):  # no real agent settings or keys from this machine
            if any(fnmatch.fnmatchcase(name, pat) for pat in BACKEND_ENV):
                monkeypatch.delenv(name)
        for key, value in agent_env(claude_cli, server.url, tmp_path / "home").items():
            monkeypatch.setenv(key, value)
        config = load_config(config_path)
        store = Store(config.db_path())
        controller = Controller(config, store)
        controller.prepare()

        async def engine() -> int:
            return (await controller.run()).exit_code

        app = MissionControlApp(store, config=config, engine=engine,
                                mission_id=controller.mission_id)
        async with app.run_test(size=(140, 45)) as pilot:
            deadline = time.monotonic() + 240
            while app.engine_code is None and time.monotonic() < deadline:
                await pilot.pause(0.1)
            assert app.engine_code == 0
            await pilot.pause(0.5)
            text = screen_text(app)
            assert "claude/" in text and "completed" in text, text  # workers pane, status bar
            await pilot.press("q")
        roles = [r.rule for r in server.model_requests()]
    mission = store.latest_mission()
    assert mission["status"] == "completed"
    attempts = store.rows("attempts", "mission_id = ?", (mission["id"],))
    by_role = {a["role"] for a in attempts}
    assert {"architect", "editor"} <= by_role and all(a["status"] == "completed" for a in attempts)
    assert "architect" in roles
    assert git(project, "show", "mc/green:app/bye.py") == BYE.strip()
    store.close()
