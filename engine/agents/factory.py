"""Choose the agent backend the config asks for."""

from __future__ import annotations

from engine.agents.claude import ClaudeBackend
from engine.agents.command import CommandBackend
from engine.agents.scripted import ScriptedBackend
from engine.agents.types import AgentBackend
from engine.config import MissionConfig, secret_env_names


def make_backend(config: MissionConfig) -> AgentBackend:
    """The backend of ``config.agent.backend``; availability is checked by ``check_available``."""
    agent = config.agent
    common = {
        "kill_grace": agent.kill_grace_seconds,
        "env_passthrough": list(agent.env_passthrough),
        # The engine's own secrets never reach an agent, even if listed in env_passthrough.
        "env_deny": secret_env_names(config),
    }
    if agent.backend == "claude":
        return ClaudeBackend(result_grace=agent.result_grace_seconds, **common)
    if agent.backend in ("codex", "gemini", "aider"):
        return CommandBackend(agent.backend, result_grace=agent.result_grace_seconds, **common)
    if agent.backend == "command":
        return CommandBackend("command", template=list(agent.command), **common)
    if agent.backend == "scripted":
        return ScriptedBackend(agent.cassette, **common)
    raise ValueError(f"unknown agent backend {agent.backend!r}")
