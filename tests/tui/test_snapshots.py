"""SVG snapshots of every screen and the approval modal, in both themes.

The clock is frozen (ten minutes into a synthetic mission written from a fixed timestamp,
with git commits made with fixed signatures), the size is fixed and nothing is random,
so the pictures are stable. Regenerate with ``uv run pytest tests/tui --snapshot-update``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mc_tui.widgets.plan_tree import PlanTree
from tests.tui.conftest import make_world

THEMES = ["mission-control-dark", "mission-control-light"]


def app_for(tmp_path: Path, theme: str, *, pending_approval: bool = False):  # type: ignore[no-untyped-def]
    world = make_world(tmp_path, pending_approval=pending_approval, theme=theme)
    return world.app()


def test_main_screen_says_when_permission_checks_are_off(snap_compare, tmp_path) -> None:
    """[agent] permission_mode = "bypassPermissions" (opt-in): the status bar says so."""
    world = make_world(tmp_path, theme=THEMES[0])
    world.config.agent.permission_mode = "bypassPermissions"
    assert snap_compare(world.app(), terminal_size=(120, 40))


async def _open_diff(pilot) -> None:  # type: ignore[no-untyped-def]
    while not pilot.app.main.ready:
        await pilot.pause(0.01)
    pilot.app.query_one(PlanTree).select_unit("E2-1.4")
    await pilot.pause()
    await pilot.press("d")


@pytest.mark.parametrize("theme", THEMES)
def test_main_screen(snap_compare, tmp_path, theme) -> None:
    assert snap_compare(app_for(tmp_path, theme), terminal_size=(120, 40))


def test_main_screen_at_80x24(snap_compare, tmp_path) -> None:
    assert snap_compare(app_for(tmp_path, THEMES[0]), terminal_size=(80, 24))


@pytest.mark.parametrize("theme", THEMES)
def test_approval_modal(snap_compare, tmp_path, theme) -> None:
    assert snap_compare(app_for(tmp_path, theme, pending_approval=True), terminal_size=(120, 40))


@pytest.mark.parametrize("theme", THEMES)
def test_diff_screen(snap_compare, tmp_path, theme) -> None:
    assert snap_compare(app_for(tmp_path, theme), terminal_size=(120, 40), run_before=_open_diff)


@pytest.mark.parametrize("theme", THEMES)
def test_help_screen(snap_compare, tmp_path, theme) -> None:
    assert snap_compare(app_for(tmp_path, theme), terminal_size=(120, 40), press=["question_mark"])


@pytest.mark.parametrize("theme", THEMES)
def test_confirm_screen(snap_compare, tmp_path, theme) -> None:
    assert snap_compare(app_for(tmp_path, theme), terminal_size=(120, 40), press=["s"])


@pytest.mark.parametrize("theme", THEMES)
def test_too_small_screen(snap_compare, tmp_path, theme) -> None:
    assert snap_compare(app_for(tmp_path, theme), terminal_size=(60, 20))
