"""Values read from Claude Code's stream-json lines: token usage, tool result text, and the
clipped text an event keeps (pure, no I/O)."""

from __future__ import annotations

import json
from typing import Any

from engine.agents.types import TokenUsage

EVENT_TEXT_LIMIT = 4000  # characters of a tool input/result kept in an event


def clip_event_text(text: str, limit: int = EVENT_TEXT_LIMIT) -> str:
    """A tool input/result as kept in an event: at most ``limit`` characters, and how many were cut."""
    return text if len(text) <= limit else text[:limit] + f"\u2026 [{len(text) - limit} more chars]"


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def usage_from_api(usage: Any) -> TokenUsage:
    """TokenUsage from an Anthropic ``usage`` object (snake_case)."""
    if not isinstance(usage, dict):
        return TokenUsage()
    return TokenUsage(
        input=_int(usage.get("input_tokens")),
        output=_int(usage.get("output_tokens")),
        cache_read=_int(usage.get("cache_read_input_tokens")),
        cache_write=_int(usage.get("cache_creation_input_tokens")),
    )


def usage_from_model_usage(model_usage: Any) -> tuple[TokenUsage, float | None]:
    """Summed tokens and ``costUSD`` of a result's ``modelUsage`` (camelCase) map."""
    total = TokenUsage()
    cost: float | None = None
    if not isinstance(model_usage, dict):
        return total, None
    for entry in model_usage.values():
        if not isinstance(entry, dict):
            continue
        total = total + TokenUsage(
            input=_int(entry.get("inputTokens")),
            output=_int(entry.get("outputTokens")),
            cache_read=_int(entry.get("cacheReadInputTokens")),
            cache_write=_int(entry.get("cacheCreationInputTokens")),
        )
        if isinstance(entry.get("costUSD"), int | float):
            cost = (cost or 0.0) + float(entry["costUSD"])
    return total, cost


def content_text(content: Any) -> str:
    """Text of a tool_result ``content`` (a string or a list of blocks)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, dict):
                if block.get("type") == "text":
                    parts.append(str(block.get("text", "")))
                else:
                    parts.append(f"[{block.get('type', 'block')}]")
            else:
                parts.append(str(block))
        return "\n".join(parts)
    return "" if content is None else json.dumps(content, default=str)

