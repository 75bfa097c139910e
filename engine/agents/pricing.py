"""A price table for estimating cost when a CLI does not report it (killed, crashed, codex).

Prices are US dollars per million tokens (input, output); cache writes cost 1.25x the
input price and cache reads 0.1x, as on Anthropic's public price list. An estimate is
always marked as such (``AgentResult.cost_estimated``).
"""

from __future__ import annotations

from engine.agents.types import TokenUsage

# (substring of the model id or alias, input $/MTok, output $/MTok); first match wins.
PRICES: tuple[tuple[str, float, float], ...] = (
    ("opus-4-5", 5.0, 25.0),
    ("opus-4-6", 5.0, 25.0),
    ("opus", 15.0, 75.0),
    ("sonnet", 3.0, 15.0),
    ("haiku-4", 1.0, 5.0),
    ("haiku", 0.8, 4.0),
    ("gpt-5-mini", 0.25, 2.0),
    ("gpt-5", 1.25, 10.0),
    ("o4-mini", 1.1, 4.4),
    ("gemini-2.5-pro", 1.25, 10.0),
    ("gemini-2.5-flash", 0.3, 2.5),
)
CACHE_WRITE_FACTOR = 1.25
CACHE_READ_FACTOR = 0.1


def price_for(model: str | None) -> tuple[float, float] | None:
    """(input, output) dollars per million tokens, or None for an unknown model."""
    name = (model or "").lower()
    for key, inp, out in PRICES:
        if key in name:
            return inp, out
    return None


def estimate_cost(model: str | None, tokens: TokenUsage) -> float | None:
    """Dollar estimate for ``tokens`` on ``model``; None when the model is unknown."""
    price = price_for(model)
    if price is None:
        return None
    inp, out = price
    usd = (
        tokens.input * inp
        + tokens.output * out
        + tokens.cache_write * inp * CACHE_WRITE_FACTOR
        + tokens.cache_read * inp * CACHE_READ_FACTOR
    ) / 1_000_000
    return round(usd, 6)
