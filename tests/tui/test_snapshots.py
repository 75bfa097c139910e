"""SVG snapshots of every screen and the approval modal, in both themes.

What they show is a mission the real pipeline ran (scripted agents, a fixed engine clock and
fixed commit dates, ``tests/support/recorded_world.py``), at its push gate or at its end;
the app's clock is frozen twenty seconds in and the size is fixed, so the pictures are
stable and cannot drift from what the engine emits. Regenerate with
``uv run pytest tests/tui/test_snapshots.py --snapshot-update``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mc_tui.widgets.plan_tree import PlanTree
from tests.tui.conftest import make_recorded_world

THEMES = ["mission-control-dark", "mission-control-light"]
DIFF_UNIT = "m1-e1-2"  # "Unit 2" of the recorded mission


@pytest.fixture
def app_for(recordings: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    def make(theme: str, *, pending_approval: bool = False):  # type: ignore[no-untyped-def]
        world = make_recorded_world(recordings, tmp_path, pending_approval=pending_approval,
                                    theme=theme)
        return world.app()
    return make


def test_main_screen_says_when_permission_checks_are_off(snap_compare, recordings,
                                                         tmp_path) -> None:
    """[agent] permission_mode = "bypassPermissions" (opt-in): the status bar says so."""
    world = make_recorded_world(recordings, tmp_path, theme=THEMES[0])
    world.config.agent.permission_mode = "bypassPermissions"
    assert snap_compare(world.app(), terminal_size=(120, 40))


async def _open_diff(pilot) -> None:  # type: ignore[no-untyped-def]
    while not pilot.app.main.ready:
        await pilot.pause(0.01)
    for _ in range(200):  # the tree fills on the app's clock
        if pilot.app.query_one(PlanTree).select_unit(DIFF_UNIT):
            break
        await pilot.pause(0.01)
    else:
        raise AssertionError(f"{DIFF_UNIT} never showed in the plan tree")
    await pilot.pause()
    await pilot.press("d")


@pytest.mark.parametrize("theme", THEMES)
def test_main_screen(snap_compare, app_for, theme) -> None:
    assert snap_compare(app_for(theme), terminal_size=(120, 40))


def test_main_screen_at_80x24(snap_compare, app_for) -> None:
    assert snap_compare(app_for(THEMES[0]), terminal_size=(80, 24))


@pytest.mark.parametrize("theme", THEMES)
def test_approval_modal(snap_compare, app_for, theme) -> None:
    assert snap_compare(app_for(theme, pending_approval=True), terminal_size=(120, 40))


@pytest.mark.parametrize("theme", THEMES)
def test_diff_screen(snap_compare, app_for, theme) -> None:
    assert snap_compare(app_for(theme), terminal_size=(120, 40), run_before=_open_diff)


@pytest.mark.parametrize("theme", THEMES)
def test_help_screen(snap_compare, app_for, theme) -> None:
    assert snap_compare(app_for(theme), terminal_size=(120, 40), press=["question_mark"])


@pytest.mark.parametrize("theme", THEMES)
def test_confirm_screen(snap_compare, app_for, theme) -> None:
    assert snap_compare(app_for(theme), terminal_size=(120, 40), press=["s"])


@pytest.mark.parametrize("theme", THEMES)
def test_too_small_screen(snap_compare, app_for, theme) -> None:
    assert snap_compare(app_for(theme), terminal_size=(60, 20))
