"""OpenTelemetry traces of missions, built from the event stream (``[tracing]``).

See ``docs/services.md#opentelemetry``. :func:`tracing` runs the observer beside a
mission; :class:`TraceBuilder` is the event -> span logic; :func:`trace_id_for` names the
trace of a mission.
"""

from engine.services.tracing.export import make_emitter, otlp_emitter, traces_url
from engine.services.tracing.observer import TraceObserver, observing, tracing
from engine.services.tracing.spans import SpanRecord, TraceBuilder, trace_id_for

__all__ = [
    "SpanRecord", "TraceBuilder", "TraceObserver", "make_emitter", "observing", "otlp_emitter",
    "trace_id_for", "traces_url", "tracing",
]
