"""The learning view (palette: "Learning: backlog and attribution") reads the real store."""

from __future__ import annotations

import pytest

from engine.learning import decisions
from engine.strategy.backlog import Backlog, BacklogItem
from mc_tui.screens.learning import LearningScreen
from mc_tui.screens.main import MainScreen
from tests.tui.conftest import screen_text, settle
from tests.tui.test_keys_and_themes import run_palette

pytestmark = pytest.mark.anyio


async def test_palette_opens_the_backlog_and_attribution(calm_world) -> None:
    store = calm_world.store
    Backlog(store).add(BacklogItem("Sanitise SQL in reports", track="security", impact=5, effort=2))
    leaves = [u for u in store.rows("units") if u["is_leaf"]][:2]
    for unit, model in zip(leaves, ("opus", "haiku"), strict=True):
        decisions.record(store, unit, model=model, two_pass=False)
    store.conn.execute("UPDATE decisions SET success = 1 WHERE factors LIKE '%opus%'")
    store.conn.execute("UPDATE decisions SET success = 0 WHERE factors LIKE '%haiku%'")
    app = calm_world.app()
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot, app)
        await run_palette(pilot, app, "Learning: backlog")
        assert isinstance(app.screen, LearningScreen)
        text = screen_text(app)
        assert "Sanitise SQL in reports" in text and "3.75" in text and "security" in text
        assert "Attribution (2 units" in text and "haiku" in text and "21%-100%" in text
        Backlog(store).add(BacklogItem("Second item"))
        await pilot.press("r")
        await pilot.pause()
        assert "Second item" in screen_text(app)
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, MainScreen)
