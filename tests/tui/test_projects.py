"""The project switcher: the registry in a modal, and `mc dashboard` re-attaching to the
chosen project's store (real stores, a real registry file)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from engine.registry import Registry
from engine.store import Store
from mc_tui.app import MissionControlApp
from mc_tui.screens.projects import ProjectsScreen, run_dashboard
from tests.tui.conftest import make_world, settle

pytestmark = pytest.mark.anyio


def register(root: Path, name: str, registry: Registry, *, mission: bool = True) -> Path:
    """A project folder with a config whose store (state.dir) holds one mission."""
    root.mkdir(parents=True, exist_ok=True)
    config = root / "mission-control.toml"
    config.write_text(f'[target]\nname = "{name}"\npath = "."\n[state]\ndir = "state"\n')
    registry.register(config)
    if mission:
        with Store(root / "state" / "mission.db") as store:
            store.insert("missions", {"objective": f"objective of {name}", "status": "completed",
                                      "started_at": time.time()})
    return config


def palette_titles(app: MissionControlApp) -> set[str]:
    """Titles the command palette offers (its provider module once the TUI has one)."""
    try:
        from mc_tui.commands import palette_commands  # type: ignore[import-not-found]
    except ImportError:
        return {c.title for c in app.get_system_commands(app.screen)}
    return {c.title for c in palette_commands()}


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Registry:
    monkeypatch.setenv("MC_REGISTRY", str(tmp_path / "projects.db"))
    return Registry()


async def test_switcher_lists_the_registry_and_picks_a_project(tmp_path: Path, registry: Registry) -> None:
    world = make_world(tmp_path / "here", pending_approval=False)
    register(tmp_path / "alpha", "alpha", registry)
    register(tmp_path / "beta", "beta", registry, mission=False)
    app = world.app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        assert "Projects: switch" in palette_titles(app)
        await app.run_action("switch_project")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, ProjectsScreen)
        table = screen.query_one("#projects-table")
        assert table.row_count == 2
        assert "alpha" in str(table.get_row_at(0)) and "completed" in str(table.get_row_at(0))
        await pilot.press("down", "enter")  # beta: no store yet -> stays here, says so
        await pilot.pause()
        assert app.switch_to is None and not isinstance(app.screen, ProjectsScreen)
        await app.run_action("switch_project")
        await pilot.pause()
        await pilot.press("enter")  # alpha
        await pilot.pause()
    assert app.switch_to is not None and app.switch_to.name == "alpha"
    assert app.return_code == 0
    world.store.close()


async def test_hosting_app_does_not_switch(tmp_path: Path, registry: Registry) -> None:
    world = make_world(tmp_path / "here", pending_approval=False)
    register(tmp_path / "alpha", "alpha", registry)
    app = world.app(attach=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        await app.run_action("switch_project")
        await pilot.pause()
        assert not isinstance(app.screen, ProjectsScreen)
    world.store.close()


def test_run_dashboard_reattaches_to_the_chosen_store(tmp_path: Path, registry: Registry) -> None:
    world = make_world(tmp_path / "here", pending_approval=False)
    register(tmp_path / "alpha", "alpha", registry)
    seen: list[tuple[Path, str]] = []

    class Scripted(MissionControlApp):
        """Records what it was attached to; the first one switches to alpha, like a user."""

        def run(self, *args: object, **kwargs: object) -> int:  # type: ignore[override]
            seen.append((self.store.path, self.config.target.name))
            if len(seen) == 1:
                self.switch_to = registry.get("alpha")
            return 0

    code = run_dashboard(world.store, config=world.config, app_factory=Scripted)
    assert code == 0
    assert seen == [(world.store.path, "synthetic"),
                    ((tmp_path / "alpha" / "state" / "mission.db").resolve(), "alpha")]
