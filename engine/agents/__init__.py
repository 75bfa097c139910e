"""Agent backends: Claude Code (stream-json), other CLIs (codex, gemini, aider, a template),
and a scripted cassette player; plus recording in the store and worker sessions.

The names below are imported from their modules on first use (PEP 562), so importing one
light module of this package (``engine.agents.types``: the TUI's first frame needs it) does not
load every backend with it. ``docs/tui.md``: "Imports before the first frame".
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_LAZY = {
    "Cassette": "cassette", "CassetteError": "cassette", "load_cassette": "cassette",
    "ClaudeBackend": "claude", "CommandBackend": "command", "make_backend": "factory",
    "WorkerMarker": "marker", "format_marker": "marker", "parse_marker": "marker",
    "run_recorded": "recording", "ScriptedBackend": "scripted",
    "AgentBackend": "types", "AgentEvent": "types", "AgentRequest": "types",
    "AgentResult": "types", "AgentRole": "types", "AgentUnavailable": "types",
    "FailureReason": "types", "TokenUsage": "types",
    "UnitRunOutcome": "worker", "run_unit_agent": "worker",
}

if TYPE_CHECKING:
    from engine.agents.cassette import Cassette, CassetteError, load_cassette
    from engine.agents.claude import ClaudeBackend
    from engine.agents.command import CommandBackend
    from engine.agents.factory import make_backend
    from engine.agents.marker import WorkerMarker, format_marker, parse_marker
    from engine.agents.recording import run_recorded
    from engine.agents.scripted import ScriptedBackend
    from engine.agents.types import (
        AgentBackend,
        AgentEvent,
        AgentRequest,
        AgentResult,
        AgentRole,
        AgentUnavailable,
        FailureReason,
        TokenUsage,
    )
    from engine.agents.worker import UnitRunOutcome, run_unit_agent


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'engine.agents' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"engine.agents.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "AgentBackend",
    "AgentEvent",
    "AgentRequest",
    "AgentResult",
    "AgentRole",
    "AgentUnavailable",
    "Cassette",
    "CassetteError",
    "ClaudeBackend",
    "CommandBackend",
    "FailureReason",
    "ScriptedBackend",
    "TokenUsage",
    "UnitRunOutcome",
    "WorkerMarker",
    "format_marker",
    "load_cassette",
    "make_backend",
    "parse_marker",
    "run_recorded",
    "run_unit_agent",
]
