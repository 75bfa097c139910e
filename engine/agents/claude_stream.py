"""Parser for Claude Code's ``--output-format stream-json`` lines (pure, no I/O).

Feed it lines as they arrive (:meth:`ClaudeStreamParser.feed`), get
:class:`AgentEvent` s back, then :meth:`ClaudeStreamParser.finish` builds the
:class:`AgentResult`. Line shapes are those of ``/work/shared/agent-protocols.md``:
system/init, assistant (one content block per line; lines of one message share its
id and repeat its usage, which is counted once), user tool_result, result (any
subtype: ``is_error`` and ``api_error_status`` decide failure, not the subtype),
system/api_retry, rate_limit_event, system/compact_boundary and stream_event.
Unknown types and fields are ignored.

Seen with the real CLI 2.1.332 (``docs/testing-real-clis.md``): an API failure ends with a
``<synthetic>`` assistant line whose ``error`` names it (``server_error``,
``authentication_failed``, ``rate_limit``, ``max_output_tokens``, ``invalid_request``) and a
result with ``is_error``; a safety refusal adds ``system/model_refusal_no_fallback`` and the
result's ``stop_reason`` is ``refusal``. A refusal and an over-long answer are failed
sessions (``bad_output``), not API errors.

Why a session failed is judged in ``claude_failures.py``; token usage and tool texts are
read by ``claude_values.py``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from engine.agents.claude_failures import (
    FATAL_RETRY_ERRORS,
    classify_failure,
    judge_no_result,
    judge_result,
)
from engine.agents.claude_values import (
    EVENT_TEXT_LIMIT,
    _int,
    clip_event_text,
    content_text,
    usage_from_api,
    usage_from_model_usage,
)
from engine.agents.permissions import denial_message, describe_call, is_denial_text
from engine.agents.pricing import estimate_cost
from engine.agents.types import (
    COMPLETED,
    ERROR,
    TIMEOUT,
    AgentEvent,
    AgentResult,
    FailureReason,
    TokenUsage,
    summarize,
)

# classify_failure, clip_event_text and the usage readers live in claude_failures.py and
# claude_values.py; they are re-exported here, where other modules and tests import them.
__all__ = ["EVENT_TEXT_LIMIT", "ClaudeStreamParser", "classify_failure", "clip_event_text",
           "content_text", "usage_from_api", "usage_from_model_usage"]

MAX_BAD_LINE_NOTICES = 20


@dataclass
class ClaudeStreamParser:
    """Turns stream-json lines into events and, at the end, one result."""

    model: str | None = None  # requested model; replaced by the resolved id from init
    session_id: str | None = None
    result_line: dict[str, Any] | None = None
    bad_lines: int = 0
    truncated_lines: int = 0
    unknown_lines: int = 0
    retries: int = 0
    retry_error: str | None = None
    retry_status: int | None = None
    limit_rejected: bool = False
    limit_info: dict[str, Any] = field(default_factory=dict)
    api_error_text: str | None = None
    api_error_code: str | None = None  # the synthetic assistant line's ``error`` (2.1.33x)
    refused: bool = False  # system/model_refusal_no_fallback or a result stop_reason refusal
    # An api_retry that no retry can mend (401/403, authentication_failed, billing_error): the
    # session is as good as over. Claude Code would still retry about 10 times with backoff
    # (some 3 minutes); the backend ends it after a short grace instead (see ``over``).
    fatal_retry: bool = False
    plan_text: str | None = None  # the ExitPlanMode plan of a read-only (plan mode) session
    _usage: dict[str, TokenUsage] = field(default_factory=dict)  # message id -> usage
    _total: TokenUsage = field(default_factory=TokenUsage)
    _message_text: dict[str, list[str]] = field(default_factory=dict)
    _last_message: str | None = None
    _tool_names: dict[str, str] = field(default_factory=dict)
    _tool_inputs: dict[str, Any] = field(default_factory=dict)
    _denied: dict[str, str] = field(default_factory=dict)  # tool_use_id (or a key) -> "Write x"
    _saw_deltas: bool = False
    _anon: int = 0

    @property
    def over(self) -> bool:
        """The session has nothing more to give: its result line arrived, or an API retry
        that cannot succeed (authentication or billing) did."""
        return self.result_line is not None or self.fatal_retry

    # ------------------------------------------------------------------ feeding
    def feed(self, line: str, *, truncated: bool = False, size: int = 0) -> list[AgentEvent]:
        """Parse one stdout line; never raises."""
        if truncated:
            self.truncated_lines += 1
            return [AgentEvent("notice", f"output line of {size} bytes was too long; skipped",
                               data={"truncated": True, "size": size})]
        stripped = line.strip()
        if not stripped:
            return []
        try:
            obj = json.loads(stripped)
        except ValueError:
            return self._bad(stripped)
        if not isinstance(obj, dict):
            return self._bad(stripped)
        try:
            return self._dispatch(obj)
        except Exception as exc:  # a shape we did not expect: report it, keep going
            return [AgentEvent("notice", f"could not interpret a {obj.get('type')!r} line: {exc}")]

    def _bad(self, text: str) -> list[AgentEvent]:
        self.bad_lines += 1
        if self.bad_lines > MAX_BAD_LINE_NOTICES:
            return []
        return [AgentEvent("notice", f"ignored a non-JSON output line: {clip_event_text(text, 200)}",
                           data={"bad_line": True})]

    def _dispatch(self, obj: dict[str, Any]) -> list[AgentEvent]:
        kind = obj.get("type")
        if isinstance(obj.get("session_id"), str) and obj["session_id"]:
            self.session_id = obj["session_id"]
        if kind == "system":
            return self._system(obj)
        if kind == "assistant":
            return self._assistant(obj)
        if kind == "user":
            return self._user(obj)
        if kind == "result":
            self.result_line = obj
            denials = obj.get("permission_denials")
            for i, d in enumerate(denials if isinstance(denials, list) else []):
                if isinstance(d, dict):
                    key = str(d.get("tool_use_id") or f"denial-{i}")
                    self._denied.setdefault(key, describe_call(str(d.get("tool_name") or "tool"),
                                                               d.get("tool_input")))
            if self._denied:
                return [AgentEvent("notice", denial_message(self._denied.values()),
                                   data={"permission_denials": len(self._denied)})]
            return []
        if kind == "rate_limit_event":
            return self._rate_limit(obj)
        if kind == "stream_event":
            return self._stream_event(obj)
        self.unknown_lines += 1
        return []

    def _system(self, obj: dict[str, Any]) -> list[AgentEvent]:
        sub = obj.get("subtype")
        if sub == "init":
            if isinstance(obj.get("model"), str):
                self.model = obj["model"]
            tools = obj.get("tools") if isinstance(obj.get("tools"), list) else []
            return [AgentEvent(
                "init",
                f"session {self.session_id} model {self.model} ({len(tools)} tools)",
                data={"session_id": self.session_id, "model": self.model, "cwd": obj.get("cwd"),
                      "permission_mode": obj.get("permissionMode"),
                      "version": obj.get("claude_code_version"), "tools": len(tools)},
            )]
        if sub == "api_retry":
            self.retries += 1
            self.retry_error = obj.get("error") if isinstance(obj.get("error"), str) else None
            self.retry_status = obj.get("error_status") if isinstance(obj.get("error_status"), int) else None
            if self.retry_error in FATAL_RETRY_ERRORS or self.retry_status in (401, 403):
                self.fatal_retry = True
            delay = obj.get("retry_delay_ms")
            return [AgentEvent(
                "retry",
                f"API retry {obj.get('attempt')}/{obj.get('max_retries')}: "
                f"{self.retry_error or 'error'} ({self.retry_status or 'no status'}), "
                f"next in {delay} ms",
                data={k: obj.get(k) for k in
                      ("attempt", "max_retries", "retry_delay_ms", "error_status", "error")},
            )]
        if sub == "model_refusal_no_fallback":
            self.refused = True
            return [AgentEvent("notice", "the model refused to answer",
                               data={"refusal": True, "model": obj.get("original_model")})]
        if sub == "informational" and isinstance(obj.get("content"), str) and obj["content"]:
            return [AgentEvent("notice", clip_event_text(obj["content"], 500))]
        if sub == "compact_boundary":
            meta = obj.get("compact_metadata") if isinstance(obj.get("compact_metadata"), dict) else {}
            return [AgentEvent("notice", "context compacted", data={"compact": meta})]
        return []  # status, hook_started, hook_response, ...: not interesting here

    def _message_id(self, message: dict[str, Any]) -> str:
        mid = message.get("id")
        if isinstance(mid, str) and mid:
            return mid
        self._anon += 1
        return f"anon-{self._anon}"

    def _assistant(self, obj: dict[str, Any]) -> list[AgentEvent]:
        message = obj.get("message")
        if not isinstance(message, dict):
            return []
        mid = self._message_id(message)
        events: list[AgentEvent] = []
        content = message.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        texts = self._message_text.setdefault(mid, [])
        if mid != self._last_message:
            self._last_message = mid
        for block in blocks if isinstance(blocks, list) else []:
            if not isinstance(block, dict):
                continue
            btype = block.get("type")
            if btype == "text":
                text = str(block.get("text", ""))
                texts.append(text)
                if obj.get("is_api_error_message") or message.get("model") == "<synthetic>":
                    self.api_error_text = text
                    if isinstance(obj.get("error"), str):
                        self.api_error_code = obj["error"]
                if not self._saw_deltas:
                    events.append(AgentEvent("text", text))
            elif btype == "thinking":
                if not self._saw_deltas:
                    events.append(AgentEvent("thinking", str(block.get("thinking", ""))))
            elif btype == "redacted_thinking":
                events.append(AgentEvent("thinking", "[redacted thinking]"))
            elif btype in ("tool_use", "server_tool_use"):
                name = str(block.get("name", "tool"))
                tool_input = block.get("input")
                if isinstance(block.get("id"), str):
                    self._tool_names[block["id"]] = name
                    self._tool_inputs[block["id"]] = tool_input
                if name == "ExitPlanMode" and isinstance(tool_input, dict):
                    plan = tool_input.get("plan")
                    if isinstance(plan, str) and plan.strip():
                        self.plan_text = plan.strip()  # plan mode: the plan is a tool input
                events.append(AgentEvent(
                    "tool_use", clip_event_text(json.dumps(tool_input, default=str)), tool=name,
                    data={"id": block.get("id"),
                          "subagent": obj.get("parent_tool_use_id") is not None},
                ))
        usage = usage_from_api(message.get("usage"))
        if isinstance(message.get("usage"), dict) and self._usage.get(mid) != usage:
            # Repeated on every block line of the message: replace its share, never add twice.
            previous = self._usage.get(mid, TokenUsage())
            self._usage[mid] = usage
            self._total = TokenUsage(
                self._total.input - previous.input + usage.input,
                self._total.output - previous.output + usage.output,
                self._total.cache_read - previous.cache_read + usage.cache_read,
                self._total.cache_write - previous.cache_write + usage.cache_write,
            )
            total = self._total
            events.append(AgentEvent(
                "usage",
                f"tokens in {total.input} out {total.output} "
                f"cache r/w {total.cache_read}/{total.cache_write}",
                data={"message_id": mid, "total": total.as_dict(), "message": usage.as_dict()},
            ))
        return events

    def _user(self, obj: dict[str, Any]) -> list[AgentEvent]:
        message = obj.get("message")
        if not isinstance(message, dict) or not isinstance(message.get("content"), list):
            return []
        events = []
        for block in message["content"]:
            if isinstance(block, dict) and block.get("type") == "tool_result":
                tool_id = block.get("tool_use_id")
                text = content_text(block.get("content"))
                if block.get("is_error") and isinstance(tool_id, str) and is_denial_text(text):
                    self._denied.setdefault(tool_id, describe_call(
                        self._tool_names.get(tool_id, "tool"), self._tool_inputs.get(tool_id)))
                events.append(AgentEvent(
                    "tool_result", clip_event_text(content_text(block.get("content"))),
                    tool=self._tool_names.get(tool_id) if isinstance(tool_id, str) else None,
                    data={"tool_use_id": tool_id, "is_error": bool(block.get("is_error"))},
                ))
        return events

    def _rate_limit(self, obj: dict[str, Any]) -> list[AgentEvent]:
        info = obj.get("rate_limit_info") if isinstance(obj.get("rate_limit_info"), dict) else {}
        status = info.get("status")
        self.limit_info = info
        if status == "rejected":
            self.limit_rejected = True
        return [AgentEvent(
            "rate_limit",
            f"rate limit {status} ({info.get('rateLimitType')}, resets at {info.get('resetsAt')})",
            data=info,
        )]

    def _stream_event(self, obj: dict[str, Any]) -> list[AgentEvent]:
        event = obj.get("event")
        if not isinstance(event, dict) or event.get("type") != "content_block_delta":
            return []
        delta = event.get("delta") if isinstance(event.get("delta"), dict) else {}
        if delta.get("type") == "text_delta":
            self._saw_deltas = True
            return [AgentEvent("text", str(delta.get("text", "")), data={"delta": True})]
        if delta.get("type") == "thinking_delta":
            self._saw_deltas = True
            return [AgentEvent("thinking", str(delta.get("thinking", "")), data={"delta": True})]
        return []

    # ------------------------------------------------------------------ results
    def tokens_so_far(self) -> TokenUsage:
        """Tokens of all messages seen so far (each message counted once)."""
        return TokenUsage(**self._total.as_dict())

    @property
    def denials(self) -> list[str]:
        """Refused tool calls so far (result ``permission_denials`` and refused tool results)."""
        return list(self._denied.values())

    def last_text(self) -> str:
        if self._last_message is None:
            return ""
        return "\n".join(t for t in self._message_text.get(self._last_message, []) if t)

    def finish(
        self,
        *,
        exit_code: int | None,
        timed_out: bool = False,
        cancelled: bool = False,
        stderr_tail: str = "",
        requested_model: str | None = None,
    ) -> AgentResult:
        """The session's result from everything seen (and how the process ended)."""
        result = AgentResult(status=ERROR, session_id=self.session_id, exit_code=exit_code)
        line = self.result_line
        model = self.model or requested_model
        # Tokens and cost: the result line when there is one, else a running estimate.
        tokens = self.tokens_so_far()
        cost: float | None = None
        if line is not None:
            mu_tokens, mu_cost = usage_from_model_usage(line.get("modelUsage"))
            if mu_tokens.total:
                tokens = mu_tokens
            elif isinstance(line.get("usage"), dict):
                tokens = usage_from_api(line["usage"])
            if isinstance(line.get("total_cost_usd"), int | float):
                cost = float(line["total_cost_usd"])
            elif mu_cost is not None:
                cost = mu_cost
        result.tokens = tokens
        if cost is None:
            cost = estimate_cost(model, tokens)
            if cost is None:
                cost = estimate_cost("sonnet", tokens)
            result.cost_estimated = True
        result.cost_usd = cost
        result.turns = (
            _int(line.get("num_turns")) if line is not None and _int(line.get("num_turns"))
            else len(self._usage)
        )
        result.text = (
            line["result"] if line is not None and isinstance(line.get("result"), str)
            and line["result"] else self.last_text()
        )

        if self.plan_text and self.plan_text not in result.text:
            result.text = f"{result.text}\n\n{self.plan_text}".strip()
        if cancelled:
            result.status, result.failure_reason = ERROR, FailureReason.CANCELLED
            result.error = "cancelled"
        elif line is not None:
            judge_result(self, line, result)
        elif timed_out:
            result.status, result.failure_reason = TIMEOUT, FailureReason.TIMEOUT
            result.error = "timed out; the agent was killed"
        else:
            judge_no_result(self, result, exit_code, stderr_tail)
        result.denials = self.denials
        if result.denials:
            denied = denial_message(result.denials)
            result.error = f"{result.error}; {denied}" if result.error else denied
        if result.status == COMPLETED:
            result.summary = summarize(result.text)
        else:
            result.summary = summarize(result.error or result.text)
        return result
