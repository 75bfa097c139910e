"""The one way planning and gate logic talks to a model.

The controller passes an ``ask(role, prompt)`` coroutine function: it runs an agent in the
given role (plain strings, so this package does not depend on ``engine.agents``) and returns
the model's final text. Errors raised by ``ask`` propagate unless a caller documents otherwise.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

# Role names passed to ``ask``.
PLANNER = "planner"
AMBITION = "ambition"
REVIEWER = "reviewer"
OBJECTIVE_CHECK = "objective_check"
STRATEGIST = "strategist"

Ask = Callable[[str, str], Awaitable[str]]


def clip(text: str, limit: int, *, what: str = "text") -> str:
    """``text`` cut to ``limit`` characters, with a visible marker when cut."""
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n... [{what} truncated: {len(text) - limit} more characters]"


def bullets(items: list[str], *, empty: str = "(none)", limit: int = 50) -> str:
    """A Markdown bullet list (at most ``limit`` items, then a count of the rest)."""
    if not items:
        return empty
    lines = [f"- {item}" for item in items[:limit]]
    if len(items) > limit:
        lines.append(f"- ... and {len(items) - limit} more")
    return "\n".join(lines)
