"""The ``backlog`` built-in plugin: closes the backlog item a chained mission took."""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.models import MissionStatus
from engine.plugins import Plugin

if TYPE_CHECKING:
    from engine.runtime import Runtime


class BacklogPlugin(Plugin):
    name = "backlog"
    builtin = True
    order = 50

    async def mission_outcome(
        self, rt: Runtime, status: MissionStatus, reason: str
    ) -> tuple[MissionStatus, str]:
        from engine.strategy.chain import settle

        mission = rt.store.get("missions", rt.mission_id)
        if mission is not None:
            item = settle(rt.store, mission, status == MissionStatus.COMPLETED)
            if item is not None:
                rt.log(f"backlog item #{item}: "
                       f"{'done' if status == MissionStatus.COMPLETED else 'reopened'}")
        return status, reason
