"""One whole mission each through the real codex, gemini and aider CLIs.

The CLIs are the pinned real ones (installed by the session fixtures of
``tests/support/fixtures.py``), run by ``mc mission --no-ui`` with the default config apart
from the backend, the models and the base URL; the model behind them is the scripted server
of ``tests/support/model_server.py`` on 127.0.0.1. Every role (planner, ambition, worker,
reviewer, objective check) goes through the same CLI. Each CLI gets a private ``HOME`` so
nothing of the user's config is read or written.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.store import Store
from tests.e2e.conftest import GIT_ENV, git, run_mc, write_config
from tests.support.model_server import ModelServer, Rule, Turns, text
from tests.support.real_clis import codex_env, gemini_env
from tests.support.scripts import (
    WORKER,
    MissionUnit,
    codex_add_file,
    codex_shell,
    gemini_router_rule,
    gemini_shell,
    gemini_write,
    marker,
    small_mission_rules,
)

pytestmark = pytest.mark.slow

BYE = "def bye(name):\n    return f'bye {name}'\n"
TEST_BYE = (
    "import unittest\n\nfrom app.bye import bye\n\n\n"
    "class ByeTest(unittest.TestCase):\n"
    "    def test_bye(self):\n        self.assertEqual(bye('x'), 'bye x')\n"
)
UNIT = MissionUnit("Add a farewell", {"app/bye.py": BYE, "tests/test_bye.py": TEST_BYE})
VERIFY = f"{sys.executable} -m unittest discover -s tests -t ."
DONE = marker("completed", "Added bye() with a test.", list(UNIT.files))


def wrapper_bin(tmp: Path, name: str, executable: str) -> Path:
    """A bin folder holding only ``name`` (a wrapper), so nothing else of the CLI's folder
    (a venv's python, node's helpers) shadows the PATH mc and the tests use."""
    folder = tmp / "bin"
    folder.mkdir(exist_ok=True)
    script = folder / name
    script.write_text(f'#!/bin/sh\nexec "{executable}" "$@"\n')
    script.chmod(0o755)
    return folder


def mission_env(tmp: Path, bin_dir: Path, extra: dict[str, str]) -> dict[str, str]:
    """mc's environment: the CLI's wrapper first on PATH, a private HOME, ``extra`` (the
    CLI's endpoint and dummy key) on top."""
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
           "XDG_CACHE_HOME": str(home / ".cache"),
           "XDG_DATA_HOME": str(home / ".local" / "share"), **GIT_ENV, **extra,
           "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    # No real key or endpoint of the user's may reach the CLIs.
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "CODEX_HOME", "GEMINI_API_KEY",
                 "GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL", "ANTHROPIC_API_KEY"):
        env.setdefault(name, "")
    return env


def config_for(target: Path, backend: str, model: str) -> Path:
    repo = target / "repo"
    (repo / ".gitignore").write_text("__pycache__/\n")  # the agents run the tests
    git(repo, "add", ".gitignore")
    git(repo, "commit", "-q", "-m", "ignore bytecode")
    return write_config(target, "", f"""
[agent]
backend = "{backend}"
[scheduler]
model = "{model}"
session_timeout = 180
[scheduler.parallel]
num_workers = 1
[models]
planner = "{model}"
reviewer = "{model}"
strategist = "{model}"
[review]
gate_completion = true
""", backend=backend)


def run_mission(target: Path, config: Path, env: dict[str, str]) -> tuple[Store, dict]:
    result = run_mc("mission", "--config", str(config), "--no-ui", env=env, timeout=600)
    store = Store(target / "repo" / ".git" / "mc" / "mission.db")
    mission = store.latest_mission()
    events = store.query("SELECT kind, payload FROM events WHERE kind IN ('log', 'attempt.finished')")
    assert result.returncode == 0, (result.stdout[-4000:] + result.stderr[-3000:]
                                    + json.dumps(events)[-4000:])
    return store, mission


def assert_landed(target: Path, store: Store, mission: dict, backend: str) -> None:
    assert mission["status"] == "completed"
    units = store.units(mission["id"])
    assert [u["status"] for u in units] == ["merged"]
    files = git(target / "repo", "ls-tree", "-r", "--name-only", "mc/green").split()
    assert "app/bye.py" in files and "tests/test_bye.py" in files
    assert git(target / "repo", "show", "mc/green:app/bye.py") + "\n" == BYE
    attempts = store.rows("attempts")
    assert {a["role"] for a in attempts} >= {"planner", "worker", "reviewer"}
    assert all(a["backend"] == backend for a in attempts) if "backend" in attempts[0] else True
    # the user's working tree is untouched
    assert git(target / "repo", "status", "--porcelain") == ""


@pytest.fixture
def server() -> Iterator[ModelServer]:
    with ModelServer() as srv:
        yield srv


# --------------------------------------------------------------------------- aider
def aider_worker_reply() -> str:
    """aider edits from SEARCH/REPLACE blocks in the reply text (new file: empty SEARCH)."""
    blocks = "".join(
        f"{path}\n```python\n<<<<<<< SEARCH\n=======\n{content}>>>>>>> REPLACE\n```\n\n"
        for path, content in UNIT.files.items())
    return f"I add bye() and its test.\n\n{blocks}{DONE}\n"


def test_mission_through_real_aider(target: Path, server: ModelServer, aider_cli: str) -> None:
    server.add(Rule(name="aider-worker", match=WORKER, reply=text(aider_worker_reply())),
               *small_mission_rules([UNIT]))
    bin_dir = wrapper_bin(target, "aider", aider_cli)
    env = mission_env(target, bin_dir, {"OPENAI_API_KEY": "sk-test-aider-key-123",
                                        "AIDER_OPENAI_API_BASE": f"{server.url}/v1"})
    store, mission = run_mission(target, config_for(target, "aider", "openai/gpt-4o"), env)
    assert_landed(target, store, mission, "aider")
    calls = server.model_requests("openai-chat")
    assert calls and all(r.path == "/v1/chat/completions" and r.model == "gpt-4o" for r in calls)
    # aider prints its own cost ("Cost: $x message, $y session"): recorded as not estimated
    costs = store.query("SELECT role, usd, estimated FROM costs")
    assert costs and all(c["usd"] > 0 and not c["estimated"] for c in costs)
    # its own files stay out of the unit (no .aider* history, cache, .gitignore change)
    changed = git(target / "repo", "diff", "--name-only", "main", "mc/green").split()
    assert sorted(changed) == ["app/bye.py", "tests/test_bye.py"]
    # the verification command ran inside aider after its edit (--auto-test --test-cmd)
    worker = [a for a in store.rows("attempts") if a["role"] == "worker"]
    assert worker and worker[0]["status"] == "completed"
    store.close()
    raw = b"".join(p.read_bytes() for p in (target / "repo" / ".git" / "mc").glob("mission.db*"))
    assert b"sk-test-aider-key-123" not in raw  # the key never lands in the store


# --------------------------------------------------------------------------- codex
def test_mission_through_real_codex(target: Path, server: ModelServer, codex_cli: str) -> None:
    # apply_patch each file (codex's own edit tool), run the verification, then the marker
    worker = Turns([*(codex_add_file(path, content) for path, content in UNIT.files.items()),
                    codex_shell(VERIFY), text(f"Added bye() with a test.\n\n{DONE}")])
    server.add(Rule(name="codex-worker", match=WORKER, reply=worker),
               *small_mission_rules([UNIT]))
    bin_dir = wrapper_bin(target, "codex", codex_cli)
    env = mission_env(target, bin_dir, codex_env(server.url, target / "home", model="gpt-5.5"))
    store, mission = run_mission(target, config_for(target, "codex", "gpt-5.5"), env)
    assert_landed(target, store, mission, "codex")
    calls = server.model_requests("openai-responses")
    assert calls and all(r.path == "/v1/responses" and r.model == "gpt-5.5" for r in calls)
    # codex reports tokens, no price: every cost is an estimate, marked so
    costs = store.query("SELECT role, usd, estimated FROM costs")
    assert costs and all(c["usd"] > 0 and c["estimated"] for c in costs)
    # the worker ran in the workspace-write sandbox; read-only roles in the read-only one
    sandboxes = {json.loads(r.headers["x-codex-turn-metadata"])["sandbox_mode"]
                 for r in calls if "x-codex-turn-metadata" in r.headers}
    assert sandboxes == {"workspace-write", "read-only"}
    worker_calls = [r for r in calls if r.rule and "codex-worker" in r.rule]
    outputs = [t for r in worker_calls for t in r.view.tool_results]
    assert any("OK" in out for _, out, _ in outputs)  # the unit's tests ran and passed


# --------------------------------------------------------------------------- gemini
def test_mission_through_real_gemini(target: Path, server: ModelServer, gemini_cli: str) -> None:
    worker = Turns([*(gemini_write(path, content) for path, content in UNIT.files.items()),
                    gemini_shell(VERIFY, "Run the tests"),
                    gemini_shell("rm -rf app/greet.py", "Not allowed"),
                    text(f"Added bye() with a test.\n\n{DONE}")])
    server.add(gemini_router_rule(), Rule(name="gemini-worker", match=WORKER, reply=worker),
               *small_mission_rules([UNIT]))
    bin_dir = wrapper_bin(target, "gemini", gemini_cli)
    env = mission_env(target, bin_dir, gemini_env(server.url, target / "home"))
    store, mission = run_mission(target, config_for(target, "gemini", "gemini-2.5-flash"), env)
    assert_landed(target, store, mission, "gemini")
    calls = server.model_requests("gemini")
    assert calls and all(":streamGenerateContent" in r.path for r in calls)
    costs = store.query("SELECT role, usd, estimated FROM costs")
    assert costs and all(c["usd"] > 0 and c["estimated"] for c in costs)
    # the policy file let the verification run and refused the rm (reported, unit still done)
    results = [res for r in calls if r.rule and "gemini-worker" in r.rule
               for res in r.view.tool_results]
    assert any("OK" in out for _, out, _ in results)
    denied = store.query("SELECT payload FROM events WHERE kind = 'log' AND payload LIKE "
                         "'%agent was denied%'")
    assert denied and "run_shell_command(rm -rf app/greet.py)" in denied[0]["payload"]
    assert "app/greet.py" in git(target / "repo", "ls-tree", "-r", "--name-only", "mc/green")
    # read-only roles ran in plan mode: no shell tool offered to the planner
    planner = next(r for r in calls if r.rule and "planner" in r.rule)
    assert "run_shell_command" not in planner.view.tools
