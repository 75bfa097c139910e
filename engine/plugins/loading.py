"""Finding and configuring plugins: the entry points of :data:`ENTRY_POINT_GROUP` plus the
built-ins (:func:`discover`), and their ``[plugins.*]`` sections validated (:func:`configure`).
"""

from __future__ import annotations

import importlib.metadata
from typing import Any

from pydantic import ValidationError

from engine.plugins.base import Plugin, PluginConfig, PluginError

ENTRY_POINT_GROUP = "mission_control.plugins"
ENTRY_POINT_GROUP = "mission_control.plugins"
# The built-ins, as registered in pyproject.toml (used when the installed metadata is stale).
BUILTIN_PLUGINS = {
    "publish": "engine.builtins:PublishPlugin",
    "rewards": "engine.builtins:RewardsPlugin",
    "episodic_memory": "engine.builtins:EpisodicMemoryPlugin",
    "context_store": "engine.learning.memory:ContextStorePlugin",
    "reflections": "engine.learning.reflection:ReflectionPlugin",
    "circuit_breaker": "engine.builtins:CircuitBreakerPlugin",
    "approval_file": "engine.channels.file:ApprovalFilePlugin",
    "telegram": "engine.channels.telegram:TelegramPlugin",
    "notify": "engine.notify:NotifyPlugin",
    "tracing": "engine.services.tracing.plugin:TracingPlugin",
    "backlog": "engine.strategy.plugin:BacklogPlugin",
    "discovery": "engine.discovery.plugin:DiscoveryPlugin",
    "prompt_evolution": "engine.learning.plugins:PromptEvolutionPlugin",
    "attribution": "engine.learning.plugins:AttributionPlugin",
}


def discover() -> dict[str, type[Plugin]]:
    """Plugin classes registered under :data:`ENTRY_POINT_GROUP`, plus the built-ins
    (always present, even when the installed metadata is stale), by name."""
    found: dict[str, type[Plugin]] = {}
    registered = list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
    names = {ep.name for ep in registered}
    registered += [importlib.metadata.EntryPoint(name, value, ENTRY_POINT_GROUP)
                   for name, value in BUILTIN_PLUGINS.items() if name not in names]
    for ep in registered:
        try:
            cls = ep.load()
        except Exception as exc:  # a broken third-party package names itself
            raise PluginError(f"plugins.{ep.name}: cannot load {ep.value}: {exc}") from None
        if not (isinstance(cls, type) and issubclass(cls, Plugin)):
            raise PluginError(f"plugins.{ep.name}: {ep.value} is not an engine.plugins.Plugin")
        name = cls.name or ep.name
        if name in found and found[name] is not cls:
            raise PluginError(f"plugins.{name}: registered twice ({ep.value})")
        found[name] = cls
    return found


def configure(
    raw: dict[str, Any], available: dict[str, type[Plugin]]
) -> dict[str, PluginConfig]:
    """Validate the ``[plugins.*]`` sections against the plugins found.

    Raises :class:`PluginError` with one ``plugins.<name>.<key>: reason`` line per problem.
    """
    problems: list[str] = []
    configs: dict[str, PluginConfig] = {}
    for name in raw:
        if name not in available:
            import difflib

            near = difflib.get_close_matches(name, list(available), n=1, cutoff=0.6)
            hint = f" (did you mean '{near[0]}'?)" if near else ""
            problems.append(f"plugins.{name}: unknown plugin{hint}; installed: "
                            f"{', '.join(sorted(available)) or 'none'}")
    for name, cls in available.items():
        section = raw.get(name) or {}
        if not isinstance(section, dict):
            problems.append(f"plugins.{name}: must be a table")
            continue
        try:
            configs[name] = cls.Config(**section)
        except ValidationError as exc:
            for err in exc.errors():
                key = ".".join(str(p) for p in err["loc"])
                msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
                problems.append(f"plugins.{name}.{key}: {msg}")
    if problems:
        raise PluginError("invalid plugin configuration\n  " + "\n  ".join(problems))
    return configs

