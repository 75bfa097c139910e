"""``[tracing]`` as a plugin: the OpenTelemetry observer, registered under the
``mission_control.plugins`` entry points (``pyproject.toml``) like the built-ins.

The controller runs its observer beside each mission (``engine/plugins.py``): it gets the
mission's events from the first one, so a resumed mission's earlier events are replayed
and its trace continues. One OTLP/HTTP exporter per process (per endpoint and service
name) is shared by the missions of that process (``--chain``) and flushed at exit
(bounded: a collector that is down holds up the end of ``mc`` by 2 s at most).
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from engine.plugins import Observer, ObserverContext, Plugin

if TYPE_CHECKING:
    from engine.models import Event
    from engine.services.tracing.export import SpanEmitter
    from engine.services.tracing.observer import TraceObserver

_lock = threading.Lock()
_emitters: dict[tuple[str, str], Any] = {}  # (endpoint, service name) -> _Shared


class _Shared:
    """A process's emitter for one collector; reports go to the newest mission's store."""

    def __init__(self, endpoint: str, service_name: str) -> None:
        from engine.services.tracing.export import otlp_emitter

        self.target: TraceObserver | None = None
        self.emitter, self.exporter = otlp_emitter(endpoint, service_name, report=self.report)

    def report(self, message: str) -> None:
        if self.target is not None:
            self.target.report(message)

    def close(self) -> None:
        from engine.services.tracing.observer import CLOSE_TIMEOUT_S

        try:
            self.emitter.flush(CLOSE_TIMEOUT_S)
        finally:
            self.emitter.shutdown()


def shared_emitter(endpoint: str, service_name: str) -> _Shared:
    with _lock:
        shared = _emitters.get((endpoint, service_name))
        if shared is None:
            if not _emitters:
                atexit.register(close_all)
            shared = _emitters[(endpoint, service_name)] = _Shared(endpoint, service_name)
        return shared


def close_all() -> None:
    """Flush and stop every exporter of this process (at exit; tests call it too)."""
    with _lock:
        shared = list(_emitters.values())
        _emitters.clear()
    for item in shared:
        item.close()


class TracingObserver:
    """Feeds one mission's events to a :class:`TraceObserver` (created on the first one)."""

    def __init__(self, shared: _Shared | None = None, emitter: SpanEmitter | None = None) -> None:
        self.shared = shared
        self.emitter = emitter or (shared.emitter if shared is not None else None)
        self.observer: TraceObserver | None = None

    def on_event(self, event: Event, ctx: ObserverContext) -> None:
        if self.observer is None:
            from engine.services.tracing.observer import TraceObserver

            assert self.emitter is not None
            self.observer = TraceObserver(ctx.store, self.emitter, export_after=None)
            self.observer.mission_id = ctx.mission_id
            if self.shared is not None:
                self.shared.target = self.observer
        self.observer.handle(event)


class TracingPlugin(Plugin):
    """``tracing``: spans of the mission over OTLP/HTTP while ``[tracing] enabled``."""

    name = "tracing"
    order = 900  # no hooks; observers run beside the mission whatever the order

    def observers(self) -> Sequence[Observer]:
        settings = self.mission.tracing
        if not settings.enabled:
            return ()
        return (TracingObserver(shared_emitter(settings.endpoint, settings.service_name)),)
