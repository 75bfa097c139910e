"""Agent backends: Claude Code (stream-json), other CLIs (codex, gemini, aider, a template),
and a scripted cassette player; plus recording in the store and worker sessions.
"""

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
