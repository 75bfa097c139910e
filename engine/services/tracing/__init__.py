"""OpenTelemetry traces of missions, built from the event stream (``[tracing]``).

See ``docs/services.md#opentelemetry``. The observer is registered as the ``tracing``
plugin (``plugin.py``, entry point group ``mission_control.plugins``); ``spans.py`` holds
the event -> span logic, ``export.py`` the SDK and OTLP/HTTP side, ``observer.py`` the
observer and a stand-alone runner. Names are imported lazily: loading the plugin does
not load the SDK.
"""

from __future__ import annotations

from typing import Any

_NAMES = {
    "SpanRecord": "spans", "TraceBuilder": "spans", "trace_id_for": "spans",
    "make_emitter": "export", "otlp_emitter": "export", "traces_url": "export",
    "TraceObserver": "observer", "observing": "observer",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    if name not in _NAMES:
        raise AttributeError(name)
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{_NAMES[name]}"), name)
