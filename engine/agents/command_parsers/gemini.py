"""gemini ``-o stream-json`` output (gemini-cli 0.61.0): init/message/tool_use/tool_result/
error/result events, its exit codes, and the tool calls its policy refused.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from engine.agents.claude_values import clip_event_text
from engine.agents.command_parsers.base import OutputParser, _n
from engine.agents.permissions import describe_call
from engine.agents.pricing import estimate_cost
from engine.agents.types import (
    ERROR,
    FAILED,
    AgentEvent,
    FailureReason,
    TokenUsage,
)

GEMINI_EXIT = {41: FailureReason.AUTH, 42: FailureReason.BAD_OUTPUT, 52: FailureReason.CRASH,
               53: FailureReason.MAX_TURNS, 54: FailureReason.CRASH, 130: FailureReason.CANCELLED}


@dataclass
class GeminiParser(OutputParser):
    """``gemini -o stream-json``: init/message/tool_use/tool_result/error/result events."""

    chunks: list[str] = field(default_factory=list)
    result_status: str | None = None
    calls: dict[str, tuple[str, Any]] = field(default_factory=dict)  # tool_id -> (name, params)
    model_tokens: dict[str, TokenUsage] = field(default_factory=dict)

    def feed(self, line: str, *, truncated: bool = False, size: int = 0) -> list[AgentEvent]:
        obj, notices = self.json_object(line, truncated=truncated, size=size)
        if obj is None:
            return notices
        kind = obj.get("type")
        if kind == "init":
            self.session_id = obj.get("session_id")
            if isinstance(obj.get("model"), str):
                self.model = obj["model"] if obj["model"] != "auto" else self.model
            return [AgentEvent("init", f"gemini session {self.session_id}",
                               data={"session_id": self.session_id, "model": obj.get("model")})]
        if kind == "message" and obj.get("role") == "assistant":
            text = str(obj.get("content", ""))
            if not obj.get("delta"):
                self.chunks.append("\n")
            self.chunks.append(text)
            return [AgentEvent("text", text, data={"delta": bool(obj.get("delta"))})]
        if kind == "tool_use":
            self.turns += 1
            name = str(obj.get("tool_name", "tool"))
            self.calls[str(obj.get("tool_id"))] = (name, obj.get("parameters"))
            return [AgentEvent("tool_use", clip_event_text(json.dumps(obj.get("parameters"), default=str)),
                               tool=name)]
        if kind == "tool_result":
            err = obj.get("error") if isinstance(obj.get("error"), dict) else {}
            failed = obj.get("status") == "error"
            output = obj.get("output") if not failed else err.get("message") or obj.get("output")
            name, params = self.calls.get(str(obj.get("tool_id")), ("tool", None))
            if failed and is_gemini_denial(err):
                self.denials.append(describe_call(name, params))
            return [AgentEvent("tool_result", clip_event_text(str(output or "")), tool=name,
                               data={"is_error": failed})]
        if kind == "error":
            self.error = str(obj.get("message") or obj.get("error") or "error")
            return [AgentEvent("notice", self.error)]
        if kind == "result":
            self.terminal = True
            self.result_status = obj.get("status")
            if obj.get("status") == "error":
                err = obj.get("error")
                self.error = str(err.get("message") if isinstance(err, dict) else err or "error")
            stats = obj.get("stats") if isinstance(obj.get("stats"), dict) else {}
            self.tokens = _gemini_tokens(stats)
            models = stats.get("models") if isinstance(stats.get("models"), dict) else {}
            self.model_tokens = {str(m): _gemini_tokens(v) for m, v in models.items()
                                 if isinstance(v, dict)}
            return [AgentEvent("usage", f"tokens in {self.tokens.input} out {self.tokens.output}",
                               data={"total": self.tokens.as_dict()})]
        return []

    def final_text(self) -> str:
        return "".join(self.chunks).strip()

    def cost(self) -> tuple[float | None, bool]:
        """Estimated from tokens per model (``stats.models``; gemini reports no price)."""
        if self.model_tokens:
            parts = [estimate_cost(m, t) for m, t in self.model_tokens.items()]
            if all(p is not None for p in parts):
                return round(sum(p for p in parts if p is not None), 6), True
        usd = estimate_cost(self.model, self.tokens)
        return usd, usd is not None

    def succeeded(self, exit_code: int | None) -> bool:
        return exit_code == 0 and self.result_status != "error"

    def failure(self, exit_code: int | None, stderr: str) -> tuple[str, FailureReason | None, str]:
        if exit_code in GEMINI_EXIT:
            reason = GEMINI_EXIT[exit_code]  # type: ignore[index]
            detail = self.error or "\n".join(stderr.strip().splitlines()[-3:])
            status = ERROR if reason == FailureReason.AUTH else FAILED
            return status, reason, f"gemini exited with code {exit_code}: {detail}"
        return super().failure(exit_code, stderr)


def _gemini_tokens(stats: dict[str, Any]) -> TokenUsage:
    """``input_tokens`` includes ``cached``; ``input`` is the uncached part."""
    cached = _n(stats.get("cached"))
    return TokenUsage(input=max(_n(stats.get("input_tokens")) - cached, 0),
                      output=_n(stats.get("output_tokens")), cache_read=cached)


_GEMINI_REFUSED = re.compile(r"not in workspace|requires user confirmation", re.I)


def is_gemini_denial(error: dict[str, Any]) -> bool:
    """A refused call: ``policy_violation`` ("Tool execution denied by policy."), a tool the
    session's mode does not offer (``tool_not_registered``, e.g. the shell in plan mode), a
    call that needed an approval ("... requires user confirmation, which is not supported in
    non-interactive mode.", e.g. an allowed command with a redirection) or a path outside the
    workspace ("Path not in workspace: ...")."""
    return error.get("type") in ("policy_violation", "tool_not_registered") or bool(
        _GEMINI_REFUSED.search(str(error.get("message", ""))))
