"""From :class:`SpanRecord` to OpenTelemetry: the SDK tracer provider and the OTLP/HTTP exporter.

Spans go through the SDK (``opentelemetry-sdk``) with the ids the builder derived (an
:class:`IdGenerator` that hands out preset ids) and explicit start/end times, then a
``BatchSpanProcessor`` (a background thread: the mission never waits for an export) to
``OTLPSpanExporter`` (``opentelemetry-exporter-otlp-proto-http``) at ``<endpoint>/v1/traces``.
Headers such as an API key come only from the standard environment variables
(``OTEL_EXPORTER_OTLP_TRACES_HEADERS`` / ``OTEL_EXPORTER_OTLP_HEADERS``), never from the
config file. A failing export is logged once (then every further failure is counted
quietly and the SDK's own per-batch error logs are muted).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)

from engine.services.tracing.records import ERROR, OK, SpanRecord

log = logging.getLogger("engine.services.tracing")

TRACES_PATH = "/v1/traces"
SCOPE = "mission-control.tracing"
DEFAULT_SCHEDULE_DELAY_MS = 1000  # unless OTEL_BSP_SCHEDULE_DELAY says otherwise
EXPORT_TIMEOUT_S = 5.0
SDK_LOGGERS = ("opentelemetry.exporter.otlp.proto.http.trace_exporter",
               "opentelemetry.exporter.otlp.common.http",
               "opentelemetry.sdk.trace.export")


def traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL of a collector base ``endpoint``.

    ``http://host:4318`` -> ``http://host:4318/v1/traces``; a URL already ending in
    ``/v1/traces`` is kept; a base path is kept (``https://gw/otlp`` -> ``.../otlp/v1/traces``).
    """
    url = endpoint.strip().rstrip("/")
    return url if url.endswith(TRACES_PATH) else url + TRACES_PATH


class _PresetIds(IdGenerator):
    """Hands out the next trace/span id set by :meth:`preset` (random when none is set)."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._random = RandomIdGenerator()

    def preset(self, trace_id: int, span_id: int) -> None:
        self._local.trace_id, self._local.span_id = trace_id, span_id

    def generate_trace_id(self) -> int:
        value = getattr(self._local, "trace_id", None)
        self._local.trace_id = None
        return value or self._random.generate_trace_id()

    def generate_span_id(self) -> int:
        value = getattr(self._local, "span_id", None)
        self._local.span_id = None
        return value or self._random.generate_span_id()


class _LastMessage(logging.Handler):
    """Keeps the SDK exporter's last log message (instead of printing it to stderr)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.message = ""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.message = record.getMessage()
        except Exception:  # a bad format string must not break the exporter thread
            self.message = str(record.msg)


def _capture_sdk_logs() -> _LastMessage:
    handler = _LastMessage()
    for name in SDK_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers = [h for h in logger.handlers if not isinstance(h, _LastMessage)]
        logger.addHandler(handler)
        logger.propagate = False
    return handler


class LoggedOnceExporter(SpanExporter):
    """Wraps an exporter: the first failure is reported (where to, why), later ones counted.

    ``report`` receives the one message (the observer writes it to the store's log, which
    the TUI and headless output show); without it the message goes to the Python logger.
    """

    def __init__(self, inner: SpanExporter, where: str,
                 report: Callable[[str], None] | None = None) -> None:
        self.inner = inner
        self.where = where
        self.report = report
        self.failures = 0
        self.exported = 0
        self._sdk_log = _capture_sdk_logs()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self.inner.export(spans)
        except Exception as exc:  # an exporter bug must not kill the processor thread
            result, why = SpanExportResult.FAILURE, f"{type(exc).__name__}: {exc}"
        else:
            why = self._sdk_log.message or "the collector did not accept them"
        if result == SpanExportResult.SUCCESS:
            self.exported += len(spans)
            return result
        self.failures += 1
        if self.failures == 1:
            message = (f"tracing: could not export {len(spans)} span(s) to {self.where} "
                       f"({why[:300]}); the mission goes on, further export errors are not "
                       "reported")
            try:
                if self.report is not None:
                    self.report(message)
                else:
                    log.warning(message)
            except Exception:
                log.warning(message)
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


class SpanEmitter:
    """Turns :class:`SpanRecord` into SDK spans on its own tracer provider (not the global one)."""

    def __init__(self, provider: TracerProvider, ids: _PresetIds,
                 exporter: SpanExporter | None = None) -> None:
        self.provider = provider
        self.ids = ids
        self.exporter = exporter
        self.tracer = provider.get_tracer(SCOPE)
        self._lock = threading.Lock()

    def emit(self, record: SpanRecord) -> None:
        if record.parent_id is not None:
            parent = trace.set_span_in_context(NonRecordingSpan(SpanContext(
                record.trace_id, record.parent_id, is_remote=False,
                trace_flags=TraceFlags(TraceFlags.SAMPLED))))
        else:
            parent = trace.set_span_in_context(trace.INVALID_SPAN)
        links = [Link(SpanContext(t, s, is_remote=False,
                                  trace_flags=TraceFlags(TraceFlags.SAMPLED)), attrs)
                 for t, s, attrs in record.links]
        with self._lock:  # the preset ids are taken by exactly this start_span
            self.ids.preset(record.trace_id, record.span_id)
            span = self.tracer.start_span(
                record.name, context=parent,
                kind=SpanKind.CLIENT if record.kind == "client" else SpanKind.INTERNAL,
                attributes=record.attributes, links=links, start_time=_ns(record.start))
        for name, ts, attrs in record.events:
            span.add_event(name, attrs, timestamp=_ns(ts))
        if record.status == ERROR:
            span.set_status(Status(StatusCode.ERROR, record.description))
        elif record.status == OK:
            span.set_status(Status(StatusCode.OK))
        span.end(end_time=_ns(record.end))

    def flush(self, timeout_s: float = EXPORT_TIMEOUT_S) -> bool:
        """Export what is batched; skipped (False) once exports failed: the collector is
        down, waiting for it would only hold up the end of ``mc``."""
        if isinstance(self.exporter, LoggedOnceExporter) and self.exporter.failures:
            return False
        done = threading.Event()

        def flush() -> None:  # the SDK's force_flush does not honour its timeout (yet)
            try:
                self.provider.force_flush()
            finally:
                done.set()

        threading.Thread(target=flush, name="mc-tracing-flush", daemon=True).start()
        return done.wait(timeout_s)

    def shutdown(self) -> None:
        """Stop: an export still retrying is cut short (what is left is dropped)."""
        if isinstance(self.exporter, LoggedOnceExporter):
            self.exporter.inner.shutdown()
        self.provider.shutdown()


def _ns(seconds: float) -> int:
    return int(seconds * 1_000_000_000)


def make_emitter(exporter: SpanExporter, *, service_name: str, batch: bool = True) -> SpanEmitter:
    """A :class:`SpanEmitter` whose spans go to ``exporter`` with ``service.name``."""
    from engine import __version__

    ids = _PresetIds()
    resource = Resource.create({SERVICE_NAME: service_name, SERVICE_VERSION: __version__})
    provider = TracerProvider(resource=resource, id_generator=ids, sampler=ALWAYS_ON,
                              shutdown_on_exit=False)
    if batch:
        delay = None if os.environ.get("OTEL_BSP_SCHEDULE_DELAY") else DEFAULT_SCHEDULE_DELAY_MS
        provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=delay))
    else:
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor

        provider.add_span_processor(SimpleSpanProcessor(exporter))
    return SpanEmitter(provider, ids, exporter)


def otlp_emitter(endpoint: str, service_name: str, *,
                 report: Callable[[str], None] | None = None,
                 ) -> tuple[SpanEmitter, LoggedOnceExporter]:
    """The emitter of ``[tracing]``: OTLP/HTTP protobuf to ``<endpoint>/v1/traces``;
    ``report`` gets the message of the first failed export."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    url = traces_url(endpoint)
    exporter = LoggedOnceExporter(OTLPSpanExporter(endpoint=url, timeout=EXPORT_TIMEOUT_S),
                                  url, report)
    return make_emitter(exporter, service_name=service_name), exporter
