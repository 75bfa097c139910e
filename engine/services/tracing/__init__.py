"""OpenTelemetry traces of missions, built from the event stream (``[tracing]``).

See ``docs/services.md#opentelemetry``. The observer is registered as the ``tracing``
plugin (``plugin.py``, entry point group ``mission_control.plugins``); ``spans.py`` holds
the event -> span logic (on ``book.py``, the span bookkeeping, and ``records.py``, the
span shapes and derived ids), ``export.py`` the SDK and OTLP/HTTP side, ``observer.py`` the
observer and a stand-alone runner. Names are imported lazily: loading the plugin does
not load the SDK.
"""

from __future__ import annotations

from typing import Any

_NAMES = {
    "SpanRecord": "records", "TraceBuilder": "spans", "trace_id_for": "records",
    "make_emitter": "export", "otlp_emitter": "export", "traces_url": "export",
    "TraceObserver": "observer", "observing": "observer",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    if name not in _NAMES:
        raise AttributeError(name)
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{_NAMES[name]}"), name)
