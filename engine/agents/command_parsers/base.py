"""The base output parser of the command backend: plain text output, cost unknown, status
from the exit code; the CLI dialects (``codex.py``, ``gemini.py``, ``aider.py``) override it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from engine.agents.claude_failures import classify_failure
from engine.agents.types import (
    COMPLETED,
    ERROR,
    FAILED,
    TIMEOUT,
    AgentEvent,
    AgentResult,
    FailureReason,
    TokenUsage,
    summarize,
)

# Auth failures as codex, gemini and aider word them (beyond Claude Code's wording).
_AUTH_EXTRA = re.compile(
    r"unauthenticated|invalid_api_key|incorrect api key|api key not valid|authenticationerror",
    re.I)
_INFRA = frozenset({FailureReason.AUTH, FailureReason.USAGE_LIMIT, FailureReason.OVERLOADED,
                    FailureReason.RATE_LIMIT})


def _n(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0



@dataclass
class OutputParser:
    """Base: plain text output, cost unknown, status from the exit code."""

    model: str | None = None
    lines: list[str] = field(default_factory=list)
    tokens: TokenUsage = field(default_factory=TokenUsage)
    session_id: str | None = None
    error: str | None = None
    turns: int = 0
    terminal: bool = False  # the CLI printed its final line
    denials: list[str] = field(default_factory=list)
    _size: int = 0

    def feed(self, line: str, *, truncated: bool = False, size: int = 0) -> list[AgentEvent]:
        if truncated:
            return [AgentEvent("notice", f"output line of {size} bytes was cut")]
        if self._size < 200_000:
            self.lines.append(line)
            self._size += len(line) + 1
        return [AgentEvent("text", line)] if line.strip() else []

    def final_text(self) -> str:
        return "\n".join(self.lines).strip()

    @staticmethod
    def json_object(
        line: str, *, truncated: bool, size: int
    ) -> tuple[dict[str, Any] | None, list[AgentEvent]]:
        """One JSONL line as a dict, or None with the notices to emit instead."""
        if truncated:
            return None, [AgentEvent("notice", f"output line of {size} bytes was cut")]
        try:
            obj = json.loads(line)
        except ValueError:
            notice = [AgentEvent("notice", f"ignored a non-JSON line: {line[:200]}")]
            return None, notice if line.strip() else []
        return (obj, []) if isinstance(obj, dict) else (None, [])

    def cost(self) -> tuple[float | None, bool]:
        return None, False  # unknown

    def failure(self, exit_code: int | None, stderr: str) -> tuple[str, FailureReason | None, str]:
        text = f"{self.error or ''} {stderr}"
        reason = classify_failure(None, text)
        if reason != FailureReason.AUTH and _AUTH_EXTRA.search(text):
            reason = FailureReason.AUTH
        if reason == FailureReason.API_ERROR:
            reason = FailureReason.CRASH
        status = ERROR if reason in _INFRA else FAILED
        detail = self.error or "\n".join(stderr.strip().splitlines()[-5:])
        return status, reason, f"exited with code {exit_code}" + (f": {detail}" if detail else "")

    def succeeded(self, exit_code: int | None) -> bool:
        return exit_code == 0 and self.error is None

    def finish(self, *, exit_code: int | None, timed_out: bool = False,
               stderr_tail: str = "") -> AgentResult:
        cost, estimated = self.cost()
        result = AgentResult(
            status=COMPLETED, text=self.final_text(), cost_usd=cost, cost_estimated=estimated,
            tokens=self.tokens, turns=self.turns or (1 if self.lines else 0),
            session_id=self.session_id, exit_code=exit_code, denials=list(self.denials),
        )
        if timed_out:
            result.status, result.failure_reason = TIMEOUT, FailureReason.TIMEOUT
            result.error = "timed out; the agent was killed"
        elif not self.succeeded(exit_code):
            result.status, result.failure_reason, result.error = self.failure(exit_code, stderr_tail)
        result.summary = summarize(result.text if result.status == COMPLETED else result.error or "")
        return result

