"""Help, remappable bindings, command palette, themes and the diff screen."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mc_tui.app import MissionControlApp, all_bindings
from mc_tui.bindings import REGISTRY, Keymap
from mc_tui.screens.diff import DiffScreen
from mc_tui.screens.help import HelpScreen
from mc_tui.screens.main import MainScreen
from mc_tui.widgets.cost_graph import CostGraph
from mc_tui.widgets.key_bar import KeyBar, fit_hints
from mc_tui.widgets.plan_tree import PlanTree
from tests.tui.conftest import make_world, screen_text, settle

pytestmark = pytest.mark.anyio


def test_every_binding_has_a_unique_id() -> None:
    ids = [b.id for b in all_bindings()]
    assert all(ids) and len(ids) == len(set(ids))
    assert {"help", "quit", "filter", "approvals", "pause", "stop", "diff", "focus_plan",
            "focus_events", "approve", "deny"} <= set(ids)


def test_one_registry_feeds_the_bindings_help_and_key_bar() -> None:
    """Every class's BINDINGS come from the registry; remapping an id changes what ? and the
    key bar show, and nothing else."""
    from mc_tui.screens.approval_modal import ApprovalModal

    declared = [b for cls in (MissionControlApp, MainScreen, CostGraph, ApprovalModal)
                for b in cls.BINDINGS]
    assert sorted(b.id for b in declared) == sorted(s.id for s in REGISTRY)
    keymap = Keymap({"pause": "x", "bogus": "y"})
    assert keymap.key("pause") == "x" and keymap.key("stop") == "s"
    assert keymap.warnings == ["ui.keys: unknown binding id 'bogus' (ignored); see ? for the ids"]
    assert ("x", "Pause/resume", "pause") in keymap.help_rows()
    assert ("x", "pause") in KeyBar(keymap.key_for).hints()


async def test_question_mark_lists_every_key_with_its_id(calm_world) -> None:
    app = calm_world.app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = screen_text(app)
        for binding in all_bindings():
            assert binding.id in text
        assert "ctrl+p" in text
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)


async def test_keys_can_be_remapped_in_config_and_bad_ids_warn(tmp_path) -> None:
    world = make_world(tmp_path, pending_approval=False,
                       keys={"pause": "x", "focus_events": "0", "no_such_action": "z"})
    app = world.app()
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        await settle(pilot, app)
        assert app.keymap_warnings and "no_such_action" in app.keymap_warnings[0]
        assert any("no_such_action" in n.message for n in app._notifications)
        await pilot.press("0")
        assert app.focused is not None and app.focused.id == "event-log"
        await pilot.press("p")  # the old key does nothing now
        assert not world.store.rows("commands")
        await pilot.press("x")
        assert [c["kind"] for c in world.store.rows("commands")] == ["pause"]
        await pilot.press("question_mark")
        rows = {bid: key for key, _, bid in app.screen.rows}
        assert rows["pause"] == "x" and rows["focus_events"] == "0"
    world.store.close()


async def run_palette(pilot, app, query: str) -> None:  # type: ignore[no-untyped-def]
    """Open the command palette, type ``query``, wait for the hit and run it (enter)."""
    from textual.command import CommandList, CommandPalette

    await pilot.press("ctrl+p")
    assert isinstance(app.screen, CommandPalette)
    await pilot.press(*query)
    for _ in range(100):  # the palette gathers hits in a worker
        await pilot.pause(0.02)
        if app.screen.query_one(CommandList).option_count:
            break
    await pilot.press("enter")
    await pilot.pause()
    await pilot.pause()


async def test_command_palette_has_an_entry_for_every_action(calm_world) -> None:
    from mc_tui.commands import palette_commands

    titles = {c.title for c in palette_commands()}
    for title in ("Mission: pause / resume", "Mission: stop", "Approvals: open pending",
                  "Unit: show diff", "List: filter", "Keys: show all", "Focus: Plan",
                  "Focus: Events", "Theme: mission-control-light"):
        assert title in titles
    app = calm_world.app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        assert "Quit" in {c.title for c in app.get_system_commands(app.screen)}  # Textual's own
        await run_palette(pilot, app, "Focus: Cost")
        assert isinstance(app.screen, MainScreen)
        assert app.focused is not None and app.focused.id == "cost-graph"
        await run_palette(pilot, app, "Mission: pause / resume")
        assert [c["kind"] for c in calm_world.store.rows("commands")] == ["pause"]


async def test_themes_are_registered_chosen_in_config_and_switchable(tmp_path) -> None:
    world = make_world(tmp_path, pending_approval=False, theme="mission-control-light")
    app = world.app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        assert app.theme == "mission-control-light"
        assert {"mission-control-dark", "mission-control-light"} <= set(app.available_themes)
        light_label = app.query_one(PlanTree)._labels["E1-1.1"]
        await run_palette(pilot, app, "Theme: mission-control-dark")
        await settle(pilot, app)
        assert app.theme == "mission-control-dark"
        dark_label = app.query_one(PlanTree)._labels["E1-1.1"]
        assert light_label.plain == dark_label.plain and light_label != dark_label  # recoloured
    world.store.close()


async def test_d_opens_the_real_diff_of_the_selected_unit(calm_world) -> None:
    app = calm_world.app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        await pilot.press("d")  # the cursor is on an epoch: nothing to show
        assert isinstance(app.screen, MainScreen)
        app.query_one(PlanTree).select_unit("E2-1.4")
        await pilot.press("d")
        assert isinstance(app.screen, DiffScreen) and app.screen.unit_id == "E2-1.4"
        text = screen_text(app)
        assert "Reconcile on start-up" in text
        assert "+# E2-1.4: Reconcile on start-up" in text
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)


async def test_diff_of_a_vanished_repo_says_so(calm_world) -> None:
    shutil.rmtree(calm_world.config.target.path)
    app = calm_world.app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        app.query_one(PlanTree).select_unit("E1-1.3")
        await pilot.press("d")
        assert "diff unavailable" in screen_text(app)


async def test_cost_graph_split_toggles_between_model_and_role(calm_world) -> None:
    app = calm_world.app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        await pilot.press("5")
        graph = app.query_one(CostGraph)
        assert graph.split_by == "model"
        text = graph.render().plain
        assert "sonnet" in text and "/ $50.00" in text and "ema" in text
        await pilot.press("m")
        assert graph.split_by == "role"
        assert "worker" in graph.render().plain


async def test_save_screenshot_renders_a_stable_svg(calm_world, tmp_path) -> None:
    from mc_tui.app import save_screenshot
    from tests.support.tui_world import frozen_clock
    from tests.tui.conftest import FROZEN_NOW

    paths = []
    for name in ("a.svg", "b.svg"):
        paths.append(await save_screenshot(calm_world.store, config=calm_world.config,
                                           path=tmp_path / name, clock=frozen_clock(FROZEN_NOW)))
    first, second = (Path(p).read_text(encoding="utf-8") for p in paths)
    assert "Mission&#160;Control" in first or "Mission Control" in first
    assert "10:00" in first and "synthetic" in first
    assert first == second


@pytest.mark.parametrize("width", [80, 100, 140])
async def test_key_bar_fits_the_terminal_and_always_shows_help(calm_world, width: int) -> None:
    app = calm_world.app()
    async with app.run_test(size=(width, 30)) as pilot:
        await settle(pilot, app)
        bar = screen_text(app).rstrip("\n").splitlines()[-1]
        assert "? keys" in bar and "^p palette" in bar, bar
        assert bar.rstrip().endswith("palette"), bar  # nothing cut off at the edge
        if width >= 100:
            assert "z zoom" in bar and "a approvals" in bar
    # tighter spacing first, then hints dropped, `? keys` and the palette kept
    pairs = [("1-6", "panes"), ("?", "keys"), ("x", "pause"), ("^p", "palette")]
    assert fit_hints(pairs, 200).plain == " 1-6 panes  ? keys  x pause  ^p palette"
    assert fit_hints(pairs, 30).plain == " 1-6 panes ? keys ^p palette"
