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
from typing import Any

import anyio

from engine.models import Event
from engine.services.tracing.export import SpanEmitter, otlp_emitter
from engine.services.tracing.spans import TraceBuilder
from engine.store import Store

log = logging.getLogger("engine.services.tracing")

CLOSE_TIMEOUT_S = 5.0


class TraceObserver:
    """Spans of every mission in ``store`` whose events come after ``export_after``.

    ``export_after`` is the last event id before this process started its mission (take
    ``store.last_event_id()`` before ``Controller.prepare``): earlier events are only
    replayed to rebuild the open spans, the spans they ended were an earlier process's.
    """

    def __init__(self, store: Store, emitter: SpanEmitter, *, export_after: int) -> None:
        self.store = store
        self.emitter = emitter
        self.last_id = export_after
        self.builder = TraceBuilder(store, self._emit, export_after=export_after)
        self.broken = False
        self.emitted = 0

    def _emit(self, record: Any) -> None:
        self.emitter.emit(record)
        self.emitted += 1

    def handle(self, event: Event) -> None:
        """Feed one event (in id order); never raises."""
        if event.id <= self.last_id:
            return
        self.last_id = event.id
        if self.broken:
            return
        try:
            self.builder.handle(event)
        except Exception:
            self.broken = True
            log.exception("tracing: the span builder failed at event %s (%s); no more spans "
                          "from this process, the mission goes on", event.id, event.kind)

    async def run(self) -> None:
        """Follow the events until cancelled."""
        try:
            async for event in self.store.subscribe(after_id=self.last_id):
                self.handle(event)
        except Exception:  # a broken store read must not cancel the mission beside it
            log.exception("tracing: stopped following the events; the mission goes on")

    def drain(self) -> None:
        """Handle what the table holds beyond the last event seen (the mission's last words)."""
        while batch := self.store.events_after(self.last_id):
            for event in batch:
                self.handle(event)

    def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Drain, flush what is batched (bounded by ``timeout_s``) and shut the exporter down."""
        try:
            self.drain()
        except Exception:
            log.exception("tracing: could not read the last events")
        try:
            self.emitter.flush(timeout_s)
        finally:
            self.emitter.shutdown()


@asynccontextmanager
async def observing(store: Store, emitter: SpanEmitter, *,
                    export_after: int) -> AsyncIterator[TraceObserver]:
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


@asynccontextmanager
async def tracing(config: Any, store: Store, *, export_after: int) -> AsyncIterator[TraceObserver | None]:
    """``[tracing]`` of ``config``: an OTLP/HTTP observer while enabled, else nothing."""
    settings = config.tracing
    if not settings.enabled:
        yield None
        return
    emitter, _ = otlp_emitter(settings.endpoint, settings.service_name)
    async with observing(store, emitter, export_after=export_after) as observer:
        yield observer
