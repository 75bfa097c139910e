"""aider ``--message`` output (aider 0.86.2): plain text with ``Tokens: ...`` and ``Cost: ...``
lines, and the litellm errors that are the only sign a session failed (aider exits 0).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine.agents.command_parsers.base import OutputParser
from engine.agents.pricing import estimate_cost
from engine.agents.types import (
    AgentEvent,
    TokenUsage,
)

_AIDER_TOKENS = re.compile(
    r"Tokens:\s*([\d.,]+[kKmM]?)\s+sent(?:,\s*([\d.,]+[kKmM]?)\s+cache write)?"
    r"(?:,\s*([\d.,]+[kKmM]?)\s+cache hit)?,\s*([\d.,]+[kKmM]?)\s+received"
)
_AIDER_COST = re.compile(r"Cost:\s*\$([\d.]+)\s+message,\s*\$([\d.]+)\s+session")
# litellm's exceptions as aider prints them ("litellm.AuthenticationError: ..."); aider then
# exits 0, so these lines are the only sign the session failed.
_AIDER_API_ERROR = re.compile(r"^litellm\.(?P<kind>\w+Error):\s*(?P<text>.*)")


def parse_count(text: str | None) -> int:
    """Aider's rounded counts: "1.2k" -> 1200, "3M" -> 3000000."""
    if not text:
        return 0
    text = text.replace(",", "").strip()
    factor = {"k": 1_000, "m": 1_000_000}.get(text[-1].lower(), 1)
    number = text[:-1] if factor > 1 else text
    try:
        return int(float(number) * factor)
    except ValueError:
        return 0


@dataclass
class AiderParser(OutputParser):
    """aider ``--message``: plain text; ``Tokens: ... Cost: $x message, $y session`` lines."""

    session_cost: float | None = None

    def feed(self, line: str, *, truncated: bool = False, size: int = 0) -> list[AgentEvent]:
        events = super().feed(line, truncated=truncated, size=size)
        api_error = _AIDER_API_ERROR.match(line.strip())
        if api_error:
            self.error = f"{api_error.group('kind')}: {api_error.group('text')}".strip()
            events.append(AgentEvent("notice", self.error))
        elif self.error and re.match(r"\s*retrying in", line, re.I):
            events.append(AgentEvent("retry", line.strip()))
            self.error = None  # aider retries rate limits and overloads itself
        tokens = _AIDER_TOKENS.search(line)
        if tokens:
            self.error = None  # a reply arrived after all
            sent, cache_write, cache_hit, received = tokens.groups()
            self.tokens = self.tokens + TokenUsage(
                input=parse_count(sent), output=parse_count(received),
                cache_write=parse_count(cache_write), cache_read=parse_count(cache_hit))
            self.turns += 1
        cost = _AIDER_COST.search(line)
        if cost:
            self.session_cost = float(cost.group(2))
        if tokens or cost:
            events.append(AgentEvent("usage", line.strip(), data={"total": self.tokens.as_dict()}))
        return events

    def cost(self) -> tuple[float | None, bool]:
        if self.session_cost is not None:
            return self.session_cost, False
        usd = estimate_cost(self.model, self.tokens)
        return usd, usd is not None
