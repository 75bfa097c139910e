"""The ``discovery`` built-in plugin: auto-discovery at the end of a completed mission when
``[discovery] enabled`` (before the strategist picks the next objective from the backlog)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from engine.models import MissionStatus
from engine.plugins import Plugin

if TYPE_CHECKING:
    from engine.runtime import Runtime
    from engine.store import Store


def last_failing_tests(store: Store, mission_id: int | None = None) -> list[str] | None:
    """The failing tests the newest verification named (of ``mission_id`` if given);
    ``None`` when there is no verification with readable results."""
    where = "failing_tests IS NOT NULL" + (" AND mission_id = ?" if mission_id else "")
    rows = store.query(f"SELECT failing_tests FROM verifications WHERE {where} "
                       "ORDER BY id DESC LIMIT 1", (mission_id,) if mission_id else ())
    if not rows:
        return None
    value = rows[0]["failing_tests"]
    return json.loads(value) if isinstance(value, str) else list(value or [])


class DiscoveryPlugin(Plugin):
    name = "discovery"
    builtin = True
    order = 60

    async def mission_outcome(
        self, rt: Runtime, status: MissionStatus, reason: str
    ) -> tuple[MissionStatus, str]:
        d = self.mission.discovery
        if d.enabled and status == MissionStatus.COMPLETED:
            from engine.discovery import discover
            from engine.strategy.backlog import Backlog

            result = await discover(
                Path(rt.llm.workdir), Backlog(rt.store, d.track_weights), tracks=list(d.tracks),
                objective=rt.objective, ask=rt.llm.ask, research=d.research_enabled,
                max_items=d.max_items, failing=last_failing_tests(rt.store, rt.mission_id))
            rt.log(f"discovery: {len(result.added)} new backlog item(s), "
                   f"{len(result.merged)} known; " + "; ".join(result.notes))
        return status, reason
