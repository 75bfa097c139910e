"""The tracing observer: follows the store's events in-process and feeds the span builder.

It reads the event stream (``Store.subscribe``: gap-free, in id order) and nothing else
of the engine, so it can never change what a mission does; a failure inside it is logged
once and the events go on being skipped, never raised into the mission. The spans leave
through the SDK's batch processor in a background thread.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

from engine.models import Event
from engine.services.tracing.export import SpanEmitter
from engine.services.tracing.spans import SpanRecord, TraceBuilder
from engine.store import Store

log = logging.getLogger("engine.services.tracing")

CLOSE_TIMEOUT_S = 2.0  # the longest the end of mc waits for the last spans to leave


class TraceObserver:
    """Spans of the missions in ``store``, from the events it is fed (:meth:`handle`).

    ``export_after``: the last event id written before this process took the mission
    over; spans ended by earlier events were an earlier process's to export (they are only
    replayed to rebuild what is open). None: per mission, from its last
    ``mission.resumed`` event (``last_event_before``), else 0.
    """

    def __init__(self, store: Store, emitter: SpanEmitter, *, export_after: int | None) -> None:
        self.store = store
        self.emitter = emitter
        self.last_id = export_after or 0
        self.builder = TraceBuilder(store, self._emit, export_after=export_after)
        self.broken = False
        self.emitted = 0
        self.mission_id: int | None = None  # the newest mission seen (where reports go)

    def report(self, message: str) -> None:
        """One warning in the store's log (shown by the TUI and headless output)."""
        try:
            self.store.append_event("log", mission_id=self.mission_id, level="warning",
                                    message=message)
        except Exception:
            log.warning(message)

    def _emit(self, record: SpanRecord) -> None:
        self.emitter.emit(record)
        self.emitted += 1

    def handle(self, event: Event) -> None:
        """Feed one event (in id order); never raises."""
        if event.id <= self.last_id:
            return
        self.last_id = event.id
        if event.mission_id is not None:
            self.mission_id = event.mission_id
        if self.broken:
            return
        try:
            self.builder.handle(event)
        except Exception as exc:
            self.broken = True
            log.debug("tracing: span builder failure", exc_info=True)
            self.report(f"tracing: the span builder failed at event {event.id} ({event.kind}: "
                        f"{type(exc).__name__}: {exc}); no more spans from this process, the "
                        "mission goes on")

    async def run(self) -> None:
        """Follow the events until cancelled."""
        try:
            async for event in self.store.subscribe(after_id=self.last_id):
                self.handle(event)
        except Exception as exc:  # a broken store read must not cancel the mission beside it
            self.report(f"tracing: stopped following the events ({type(exc).__name__}: {exc}); "
                        "the mission goes on")

    def drain(self) -> None:
        """Handle what the table holds beyond the last event seen (the mission's last words)."""
        while batch := self.store.events_after(self.last_id):
            for event in batch:
                self.handle(event)

    def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Drain, flush what is batched (bounded by ``timeout_s``) and shut the exporter down."""
        try:
            self.drain()
        except Exception as exc:
            log.warning("tracing: could not read the last events: %s", exc)
        try:
            self.emitter.flush(timeout_s)
        finally:
            self.emitter.shutdown()


@asynccontextmanager
async def observing(store: Store, emitter: SpanEmitter, *,
                    export_after: int | None) -> AsyncIterator[TraceObserver]:
    """Run a :class:`TraceObserver` beside the body; on exit drain, flush and shut it down."""
    observer = TraceObserver(store, emitter, export_after=export_after)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(observer.run)
            try:
                yield observer
            finally:
                tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(observer.close)
