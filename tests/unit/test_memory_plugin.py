"""The episodic memory and context store plugins' hooks on a real store: what enters the
planner's and a worker's prompt, within the configured budget and threshold."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

from engine.config import MissionConfig
from engine.learning import episodes
from engine.learning.memory import (
    ContextStoreConfig,
    ContextStorePlugin,
    EpisodicMemoryPlugin,
    failure_gist,
)
from engine.plugins import PluginConfig
from engine.store import Store


def runtime(tmp_path: Path) -> SimpleNamespace:
    store = Store(tmp_path / "mission.db")
    mid = store.insert("missions", {"objective": "Add farewells to the greeting app",
                                    "status": "running", "started_at": time.time()})
    return SimpleNamespace(store=store, mission_id=mid,
                           objective="Add farewells to the greeting app")


def seed(rt: SimpleNamespace, n: int, mission_id: int) -> None:
    for i in range(n):
        episodes.record(
            rt.store, kind="unit", key=f"m{mission_id}-{i}", mission_id=mission_id,
            unit_id=None, objective="Add farewells to the greeting app",
            title=f"Add farewell variant {i}", files=["app/bye.py"], outcome="failed",
            failure_reason="app/bye.py must start with the SPDX header " + "x" * 100,
            review_feedback="", fixups="", cost_usd=0.1, max_episodes=100)


def plugin(**memory: object) -> EpisodicMemoryPlugin:
    config = MissionConfig.model_validate({"episodic_memory": memory})
    return EpisodicMemoryPlugin(PluginConfig(), config)


def test_planner_recall_leaves_out_the_current_mission_and_keeps_the_budget(tmp_path: Path) -> None:
    rt = runtime(tmp_path)
    seed(rt, 10, mission_id=rt.mission_id + 100)  # an earlier mission's episodes
    seed(rt, 1, mission_id=rt.mission_id)         # this mission's own
    notes = plugin(prompt_tokens=120).planning_notes(rt)  # type: ignore[arg-type]
    assert 1 <= len(notes) < 10
    assert sum(len(n) + 3 for n in notes) <= 120 * episodes.CHARS_PER_TOKEN
    assert all(f"m{rt.mission_id}-" not in n for n in notes)
    assert plugin(prompt_tokens=0).planning_notes(rt) == []  # type: ignore[arg-type]
    assert plugin(enabled=False).planning_notes(rt) == []  # type: ignore[arg-type]


def test_worker_recall_uses_the_units_title_and_files(tmp_path: Path) -> None:
    rt = runtime(tmp_path)
    seed(rt, 2, mission_id=rt.mission_id)
    unit = {"id": "u9", "title": "Add a farewell variant", "files_hint": ["app/bye.py"]}
    notes = plugin().worker_notes(rt, unit)  # type: ignore[arg-type]
    assert notes and "SPDX header" in notes[0]
    far = {"id": "u8", "title": "Set up the docs site", "files_hint": ["docs/conf.py"]}
    assert plugin().worker_notes(rt, far) == []  # type: ignore[arg-type]
    assert plugin(similarity_threshold=1.0).worker_notes(rt, {  # type: ignore[arg-type]
        "title": "Add a farewell variant", "files_hint": ["lib/x.py"]}) == []


def test_context_notes_respect_their_budget(tmp_path: Path) -> None:
    rt = runtime(tmp_path)
    items = [{"kind": "convention", "text": f"rule number {i} " + "y" * 80, "paths": ["app/"]}
             for i in range(20)]
    rt.store.append_event("unit.context", mission_id=rt.mission_id, unit_id=None,
                          attempt_id=0, files_changed=[], items=items)
    cfg = MissionConfig()
    small = ContextStorePlugin(ContextStoreConfig(prompt_tokens=100), cfg)
    notes = small.worker_notes(rt, {"id": "u1", "files_hint": ["app/x.py"]})  # type: ignore[arg-type]
    assert 1 <= len(notes) < 20 and sum(len(n) + 3 for n in notes) <= 400
    assert all(n.startswith("convention (app/): rule number") for n in notes)


def test_failure_gist_keeps_the_telling_lines() -> None:
    output = ("F.\n======\nFAIL: test_headers (tests.test_headers.Headers)\n------\n"
              "Traceback (most recent call last):\n  File \"t.py\", line 9, in test_headers\n"
              "AssertionError: app/m1.py must start with # SPDX-License-Identifier: MIT\n\n"
              "Ran 2 tests in 0.001s\n\nFAILED (failures=1)\n")
    gist = failure_gist(output)
    assert "app/m1.py must start with # SPDX-License-Identifier: MIT" in gist
    assert "Traceback" not in gist and len(gist) <= 240


def test_workers_are_not_told_about_units_that_simply_merged(tmp_path: Path) -> None:
    rt = runtime(tmp_path)
    for key, fixups in (("plain", "1 attempt(s)"),
                        ("fixed", "1 attempt(s), 1 fixup round(s); needed a fixup after: x")):
        episodes.record(rt.store, kind="unit", key=key, mission_id=7, unit_id=key,
                        objective="o", title=f"Add the {key} farewell", files=["app/bye.py"],
                        outcome="merged", failure_reason="", review_feedback="", fixups=fixups,
                        cost_usd=0.1, max_episodes=100)
    notes = plugin().worker_notes(rt, {"title": "Add the farewell", "files_hint": ["app/bye.py"]})  # type: ignore[arg-type]
    assert len(notes) == 1 and "fixed" in notes[0]
