"""The original tool's documented example config validates, and its three odd values mean
something here: ``telegram = true``, ``selection = "best_score"``, ``fallback_strategy = "simple"``."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import pytest

from engine.config import TelegramConfig, load_config, unavailable_notes
from engine.dispatch import run_unit
from engine.models import UnitStatus
from engine.resilience.breaker import BreakerState
from tests.integration.mission_support import add_unit, make_controller, make_runtime

ORIGINAL = Path(__file__).resolve().parents[2] / "examples" / "mission-control.original.toml"
DESIGN_KEYS = {  # the example's keys, as the design lists them
    "target": ["name", "path", "branch", "objective"],
    "target.verification": ["command", "timeout"],
    "scheduler": ["model", "session_timeout"],
    "scheduler.budget": ["max_per_session_usd", "max_per_run_usd"],
    "scheduler.parallel": ["num_workers", "pool_dir"],
    "rounds": ["max_rounds", "stall_threshold"],
    "planner": ["max_depth", "max_children_per_node"],
    "continuous": ["max_wall_time_seconds", "min_ambition_score", "max_replan_attempts",
                   "verify_objective_completion", "max_objective_checks"],
    "review": ["gate_completion", "min_review_score"],
    "green_branch": ["auto_push", "push_branch", "fixup_max_attempts", "fixup_candidates"],
    "discovery": ["enabled", "tracks", "research_enabled"],
    "models": ["planner", "reviewer", "strategist"],
    "hitl": ["enabled", "gates", "poll_timeout", "telegram"],
    "speculation": ["enabled", "branch_count", "selection"],
    "degradation": ["enabled", "failure_threshold", "reset_timeout", "fallback_strategy"],
    "episodic_memory": ["enabled", "max_episodes", "similarity_threshold"],
    "a2a": ["enabled", "host", "port"],
    "tracing": ["enabled", "endpoint", "service_name"],
}


def test_the_example_has_every_key_of_the_original(tmp_path: Path) -> None:
    data = tomllib.loads(ORIGINAL.read_text())
    for section, keys in DESIGN_KEYS.items():
        table = data
        for part in section.split("."):
            table = table[part]
        scalar = {k for k, v in table.items() if not isinstance(v, dict) or k == "telegram"}
        assert scalar == set(keys), section


def test_the_original_example_validates_with_documented_meanings(tmp_path: Path) -> None:
    config = load_config(shutil.copy(ORIGINAL, tmp_path / "mission-control.toml"))
    # telegram = true: on, every other Telegram key at its default
    assert config.hitl.telegram == TelegramConfig(enabled=True)
    assert config.speculation.selection == "best_score"
    assert config.degradation.fallback_strategy == "simple"
    assert config.scheduler.parallel.pool_dir == Path("/tmp/mc-pool")
    # features not built yet say so, never silently
    notes = unavailable_notes(config)
    # Telegram approvals exist; without a chat to answer in they stay off, and say so
    assert not any(n.startswith("hitl.telegram.enabled = true") for n in notes)
    assert any(n.startswith("hitl.telegram.chat_id is empty") for n in notes)
    # auto-discovery exists now (the discovery plugin, `mc discover`): no note
    assert config.discovery.enabled and not any(n.startswith("discovery.") for n in notes)


@pytest.mark.parametrize(("text", "enabled"), [("true", True), ("false", False)])
def test_telegram_switch_and_table_forms(tmp_path: Path, text: str, enabled: bool) -> None:
    path = tmp_path / "mission-control.toml"
    path.write_text(f"[hitl]\ntelegram = {text}\n")
    assert load_config(path).hitl.telegram == TelegramConfig(enabled=enabled)
    path.write_text('[hitl.telegram]\nenabled = true\nchat_id = "42"\n')
    assert load_config(path).hitl.telegram == TelegramConfig(enabled=True, chat_id="42")


def test_telegram_switch_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "mission-control.toml"
    path.write_text("")
    monkeypatch.setenv("MC_HITL__TELEGRAM", "true")
    assert load_config(path).hitl.telegram.enabled


SIMPLE = '[agent]\ntwo_pass = true\n[degradation]\nfallback_strategy = "simple"\nfailure_threshold = 2\n'
CASSETTE = '''
[[interaction]]
role = "architect"
actions = [{ type = "text", text = "1. add app/farewell.py" }]

[[interaction]]
role = "editor"
actions = [
  { type = "write", path = "app/farewell.py", content = "def bye():\\n    return 'bye'\\n" },
  { type = "commit", message = "Add farewell" },
]

[[interaction]]
role = "worker"
actions = [
  { type = "write", path = "app/farewell.py", content = "def bye():\\n    return 'bye'\\n" },
  { type = "commit", message = "Add farewell" },
]
'''


def test_simple_degradation_halves_workers_and_drops_the_architect_pass(tmp_path: Path) -> None:
    controller = make_controller(tmp_path, CASSETTE, SIMPLE)
    assert controller.breaker is not None
    assert (controller._dispatch_limit(4), controller._single_pass()) == (4, False)
    controller.breaker.record(False)
    controller.breaker.record(False)
    assert controller.breaker.state == BreakerState.OPEN
    assert (controller._dispatch_limit(4), controller._single_pass()) == (2, True)
    controller.lock.release()


@pytest.mark.anyio
@pytest.mark.parametrize(("single", "roles"), [(False, ["architect", "editor"]), (True, ["worker"])])
async def test_single_pass_runs_one_session(tmp_path: Path, single: bool, roles: list[str]) -> None:
    rt = make_runtime(tmp_path, CASSETTE, SIMPLE)
    add_unit(rt, "u1", UnitStatus.READY)
    await run_unit(rt, "u1", 0, single_pass=single)
    assert rt.store.get("units", "u1")["status"] == UnitStatus.QUEUED
    assert [a["role"] for a in rt.store.rows("attempts")] == roles


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
