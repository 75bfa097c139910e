"""Running observers (:class:`ObserverRunner`): one task per observer over its own cursor
of the events table, drained for up to :data:`DRAIN_SECONDS` at the end of the mission.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import anyio

from engine.plugins.base import Observer, ObserverContext, Plugin

if TYPE_CHECKING:
    from engine.plugins.manager import PluginManager
    from engine.store import Store

DRAIN_SECONDS = 10.0  # how long the end of a mission waits for observers to catch up


class ObserverRunner:
    """Runs each observer in its own task over its own cursor of the events table.

    Delivery: every event of the mission with id > the observer's start (``start_after``
    if the observer defines it, else 0: from the mission's first event, so a resumed
    mission replays; the event id is the idempotency key), in id order, without gaps,
    at least once. At the end of the block each observer gets up to
    :data:`DRAIN_SECONDS` to reach the last event, then it is cancelled.
    """

    def __init__(self, manager: PluginManager, store: Store, mission_id: int) -> None:
        self.manager = manager
        self.store = store
        self.mission_id = mission_id
        self.delivered: dict[int, int] = {}  # observer index -> last event id handled
        self._pumping: set[int] = set()  # observers whose pump still runs
        self._target: int | None = None
        self._pairs = manager.observers()

    @asynccontextmanager
    async def run(self) -> AsyncIterator[ObserverRunner]:
        """Observe for the life of the block, then drain (shielded) and stop."""
        if not self._pairs:
            yield self
            return
        async with anyio.create_task_group() as tg:
            for index, (plugin, observer) in enumerate(self._pairs):
                self._pumping.add(index)
                tg.start_soon(self._pump, index, plugin, observer)
                if callable(getattr(observer, "run", None)):
                    tg.start_soon(self._background, plugin, observer)
            try:
                yield self
            finally:
                with anyio.CancelScope(shield=True):
                    self._target = self.store.last_event_id()
                    with anyio.move_on_after(DRAIN_SECONDS):
                        # an observer whose pump was cancelled with the block (the mission
                        # interrupted) cannot catch up: waiting for it only held up the exit
                        while any(self.delivered.get(i, 0) < self._caught_up_to(i)
                                  for i in range(len(self._pairs)) if i in self._pumping):
                            await anyio.sleep(0.02)
                tg.cancel_scope.cancel()

    def _caught_up_to(self, index: int) -> int:
        """The last event of this mission up to the drain target (0 if none)."""
        rows = self.store.query(
            "SELECT MAX(id) AS id FROM events WHERE mission_id = ? AND id <= ?",
            (self.mission_id, self._target or 0),
        )
        return int(rows[0]["id"] or 0)

    async def _background(self, plugin: Plugin, observer: Observer) -> None:
        """An observer's optional ``async run(ctx)``: its own background task for the life
        of the mission (polling a file, a chat API). An exception is recorded as
        ``plugin.error`` and ends only that task; it is cancelled after the drain."""
        try:
            await observer.run(ObserverContext(self.store, self.mission_id))  # type: ignore[attr-defined]
        except Exception as exc:
            self.manager._error(plugin, f"run:{type(observer).__name__}", exc)

    async def _pump(self, index: int, plugin: Plugin, observer: Observer) -> None:
        ctx = ObserverContext(self.store, self.mission_id)
        start = getattr(observer, "start_after", None)
        try:
            after = int(start(ctx)) if start is not None else 0
        except Exception as exc:
            self.manager._error(plugin, "start_after", exc)
            after = 0
        self.delivered[index] = after
        is_async = inspect.iscoroutinefunction(observer.on_event)
        try:
            async for event in self.store.subscribe(after_id=after, mission_id=self.mission_id):
                try:
                    if is_async:
                        await observer.on_event(event, ctx)
                    else:
                        await anyio.to_thread.run_sync(observer.on_event, event, ctx)
                except Exception as exc:
                    self.manager._error(plugin, f"observer:{type(observer).__name__}", exc)
                self.delivered[index] = event.id
        finally:
            self._pumping.discard(index)

