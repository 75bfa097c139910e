"""A canned ``ask(role, prompt)`` for the gate, planner and strategist unit tests."""

from __future__ import annotations


class Canned:
    """Answers every call with ``answer`` (or raises it, if it is an exception); keeps the calls."""

    def __init__(self, answer: str | Exception) -> None:
        self.answer = answer
        self.calls: list[tuple[str, str]] = []

    async def __call__(self, role: str, prompt: str) -> str:
        self.calls.append((role, prompt))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer
