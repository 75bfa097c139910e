"""The plugin protocol: discovery, config sections, hooks, isolated observers (real store)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from engine.config import ConfigError, MissionConfig, load_config
from engine.controller import Controller, MissionSetupError
from engine.models import Event
from engine.plugins import (
    ObserverContext,
    Plugin,
    PluginConfig,
    PluginError,
    PluginManager,
    WorkerOptions,
    configure,
    discover,
)
from engine.store import Store
from tests.support.plugins import register, use_example

BUILTINS = {"publish", "rewards", "episodic_memory", "context_store", "reflections",
            "circuit_breaker", "approval_file", "telegram", "notify", "backlog", "discovery",
            "prompt_evolution", "attribution", "tracing"}


class Recorder:
    def __init__(self, slow: float = 0.0, fail_on: str | None = None) -> None:
        self.seen: list[int] = []
        self.slow = slow
        self.fail_on = fail_on

    async def on_event(self, event: Event, ctx: ObserverContext) -> None:
        if self.slow:
            await anyio.sleep(self.slow)
        self.seen.append(event.id)
        if self.fail_on and event.kind == self.fail_on:
            raise ValueError(f"boom on {event.kind}")


class ObservingPlugin(Plugin):
    name = "observing"

    def __init__(self, observers: list[Any]) -> None:
        super().__init__(PluginConfig(), MissionConfig())
        self._observers = observers

    def observers(self) -> list[Any]:
        return self._observers


def test_builtins_are_found_through_the_entry_point_group() -> None:
    assert set(discover()) >= BUILTINS


def test_config_sections_are_validated_with_key_paths(tmp_path: Path) -> None:
    (tmp_path / "mission-control.toml").write_text(
        '[target]\npath = "."\n[plugins.rewardz]\nenabled = false\n'
        '[plugins.episodic_memory]\nenabled = false\ncolour = "red"\n'
    )
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "mission-control.toml")
    text = str(err.value)
    assert "plugins.rewardz: unknown plugin (did you mean 'rewards'?)" in text
    assert "plugins.episodic_memory.colour: unknown key" in text


def test_a_builtin_can_be_switched_off() -> None:
    config = MissionConfig(plugins={"rewards": {"enabled": False}})
    names = {p.name for p in PluginManager.load(config).plugins}
    assert BUILTINS - names == {"rewards"}  # other installed plugins may load too


def test_example_plugin_config_and_ordering_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    use_example(monkeypatch)
    with pytest.raises(PluginError, match=r"plugins\.audit\.order: "):
        configure({"audit": {"order": "random"}}, discover())
    manager = PluginManager.load(MissionConfig(plugins={"audit": {"order": "fewest_files"}}))
    units = [
        {"id": "a", "files_hint": ["x", "y", "z"], "priority": 1},
        {"id": "b", "files_hint": ["x"], "priority": 3},
        {"id": "c", "files_hint": [], "priority": 3},
    ]
    assert [u["id"] for u in manager.order_ready(units)] == ["c", "b", "a"]


def test_a_failing_third_party_hook_is_recorded_once_and_the_default_used(tmp_path: Path) -> None:
    class Broken(Plugin):
        name = "broken"

        def order_ready(self, units: list[dict[str, Any]]) -> list[dict[str, Any]]:
            raise RuntimeError("no order today")

        def worker_options(self, unit: dict[str, Any], options: WorkerOptions) -> WorkerOptions:
            return WorkerOptions(model="haiku")

        def dispatch_limit(self, workers: int) -> int:
            return 0  # never below one: a plugin cannot starve the mission

    store = Store(tmp_path / "m.db")
    manager = PluginManager([Broken(PluginConfig(), MissionConfig())])
    manager.bind(store, None)  # type: ignore[arg-type]
    units = [{"id": "a"}, {"id": "b"}]
    assert manager.order_ready(units) == units
    assert manager.order_ready(units) == units
    errors = [e for e in store.events_after(0) if e.kind == "plugin.error"]
    assert len(errors) == 1 and errors[0].payload["plugin"] == "broken"
    assert "no order today" in errors[0].payload["error"]
    assert manager.worker_options({"id": "a"}).model == "haiku"
    assert manager.dispatch_limit(4) == 1


def test_around_phase_wraps_in_order_and_runs_the_phase_once(tmp_path: Path) -> None:
    calls: list[str] = []

    class Wrap(Plugin):
        def __init__(self, name: str, fail: bool = False) -> None:
            super().__init__(PluginConfig(), MissionConfig())
            self.name = name  # type: ignore[misc]
            self.fail = fail

        async def around_phase(self, phase, view, proceed):  # type: ignore[no-untyped-def]
            calls.append(f"{self.name}>")
            out = await proceed()
            calls.append(f"<{self.name}")
            if self.fail:
                raise RuntimeError("after")
            return out

    async def body() -> int:
        calls.append("body")
        return 7

    store = Store(tmp_path / "m.db")
    manager = PluginManager([Wrap("a"), Wrap("b", fail=True)])
    manager.bind(store, None)  # type: ignore[arg-type]
    assert anyio.run(manager.around_phase, "plan", None, body) == 7
    assert calls == ["a>", "b>", "body", "<b", "<a"]


def _mission(store: Store) -> int:
    return int(store.insert("missions", {"objective": "o", "status": "running",
                                         "started_at": 0.0}, event="mission.created"))


def test_observers_see_every_event_in_order_isolated_from_each_other(tmp_path: Path) -> None:
    store = Store(tmp_path / "m.db")
    mission_id = _mission(store)
    other = _mission(store)
    good, failing, slow = Recorder(), Recorder(fail_on="log"), Recorder(slow=0.01)
    manager = PluginManager([ObservingPlugin([good, failing, slow])])

    async def main() -> None:
        async with manager.observing(store, mission_id):
            for i in range(30):
                store.append_event("log", mission_id=mission_id, message=str(i))
                store.append_event("log", mission_id=other, message="not ours")
                if i % 10 == 0:
                    await anyio.sleep(0)
            store.append_event("mission.status", mission_id=mission_id, to="completed")

    anyio.run(main)
    ours = [e.id for e in store.events_after(0, mission_id)]
    errors = [e for e in store.events_after(0) if e.kind == "plugin.error"]
    assert len(errors) == 1 and "boom on log" in errors[0].payload["error"]  # logged once
    ours_before_error = [i for i in ours if i < errors[0].id]
    for recorder in (good, failing, slow):  # all delivered, in order, no gaps
        assert recorder.seen[: len(ours_before_error)] == ours_before_error
        assert recorder.seen == sorted(recorder.seen)
        assert set(ours) <= set(recorder.seen)


def test_a_stuck_observer_is_cancelled_after_the_drain(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.plugins.observers

    monkeypatch.setattr(engine.plugins.observers, "DRAIN_SECONDS", 0.3)
    store = Store(tmp_path / "m.db")
    mission_id = _mission(store)

    class Stuck:
        async def on_event(self, event: Event, ctx: ObserverContext) -> None:
            await anyio.sleep(3600)

    good = Recorder()
    manager = PluginManager([ObservingPlugin([Stuck(), good])])

    async def main() -> None:
        async with manager.observing(store, mission_id):
            store.append_event("log", mission_id=mission_id, message="x")

    started = time.monotonic()
    anyio.run(main)
    assert time.monotonic() - started < 3
    assert len(good.seen) == 2


def test_bad_plugin_in_a_programmatic_config_is_a_setup_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register(monkeypatch, nope="json:dumps")
    with pytest.raises(MissionSetupError, match=r"plugins\.nope: .* is not an engine\.plugins\.Plugin"):
        Controller(MissionConfig(), Store(tmp_path / "m.db"))


def test_example_observer_resumes_after_the_last_logged_id(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    use_example(monkeypatch)
    store = Store(tmp_path / "m.db")
    mission_id = _mission(store)
    log = tmp_path / "audit.jsonl"
    config = MissionConfig(plugins={"audit": {"path": str(log)}})

    async def run(n: int) -> None:
        manager = PluginManager.load(config)
        async with manager.observing(store, mission_id):
            for i in range(n):
                store.append_event("log", mission_id=mission_id, message=str(i))

    anyio.run(run, 3)
    anyio.run(run, 2)  # "resumed": nothing twice, nothing lost
    ids = [json.loads(line)["id"] for line in log.read_text().splitlines()]
    assert ids == [e.id for e in store.events_after(0, mission_id)]
