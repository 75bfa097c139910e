"""Output parsers for the command backend: codex ``exec --json``, gemini ``-o stream-json``,
aider (plain text) and plain user templates. Pure: lines in, events and a result out.

Shapes are those the real CLIs printed against a scripted model server (codex 0.171.0,
gemini-cli 0.61.0, aider 0.86.2); short real transcripts are in
``tests/fixtures/agent_output/``. ``terminal`` turns true at the CLI's final line
(codex ``turn.completed``/``turn.failed``, gemini ``result``) so the process gets only a short
grace to exit; ``denials`` lists the tool calls the CLI refused ("run_shell_command(rm x)").
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.agents.claude_stream import classify_failure, clip_event_text
from engine.agents.permissions import describe_call
from engine.agents.pricing import estimate_cost
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


@dataclass
class CodexParser(OutputParser):
    """``codex exec --json``: thread/turn/item events; usage on turn.completed; no cost."""

    messages: list[str] = field(default_factory=list)
    turn_failed: bool = False

    def feed(self, line: str, *, truncated: bool = False, size: int = 0) -> list[AgentEvent]:
        obj, notices = self.json_object(line, truncated=truncated, size=size)
        if obj is None:
            return notices
        kind = obj.get("type")
        if kind == "thread.started":
            self.session_id = obj.get("thread_id")
            return [AgentEvent("init", f"codex thread {self.session_id}",
                               data={"session_id": self.session_id})]
        if kind == "turn.completed":
            # 0.171: input_tokens (cached included), cached_input_tokens,
            # cache_write_input_tokens, output_tokens, reasoning_output_tokens (in output)
            usage = obj.get("usage") if isinstance(obj.get("usage"), dict) else {}
            cached = _n(usage.get("cached_input_tokens"))
            written = _n(usage.get("cache_write_input_tokens"))
            self.tokens = self.tokens + TokenUsage(
                input=max(_n(usage.get("input_tokens")) - cached - written, 0),
                output=_n(usage.get("output_tokens")), cache_read=cached, cache_write=written)
            self.turns += 1
            self.terminal = True
            return [AgentEvent("usage", f"tokens in {self.tokens.input} out {self.tokens.output}",
                               data={"total": self.tokens.as_dict()})]
        if kind == "turn.failed":
            err = obj.get("error") if isinstance(obj.get("error"), dict) else {}
            self.error = str(err.get("message") or "turn failed")
            self.turn_failed = True
            self.terminal = True
            return [AgentEvent("notice", f"turn failed: {self.error}")]
        if kind == "error":
            message = str(obj.get("message", "error"))
            if re.search(r"reconnect|retrying", message, re.I):
                return [AgentEvent("retry", message)]
            self.error = message
            return [AgentEvent("notice", message)]
        if kind in ("item.started", "item.updated", "item.completed"):
            return self._item(kind, obj.get("item"))
        return []

    def _item(self, kind: str, item: Any) -> list[AgentEvent]:
        if not isinstance(item, dict):
            return []
        itype = item.get("type") or item.get("item_type")  # before codex PR #4525: item_type
        if kind == "item.started":
            if itype == "command_execution":
                return [AgentEvent("tool_use", str(item.get("command", "")), tool="shell")]
            return []
        if kind != "item.completed":
            return []
        if itype in ("agent_message", "assistant_message"):
            text = str(item.get("text", ""))
            self.messages.append(text)
            return [AgentEvent("text", text)]
        if itype == "reasoning":
            return [AgentEvent("thinking", str(item.get("text", "")))]
        if itype == "command_execution":
            output = str(item.get("aggregated_output", ""))
            failed = item.get("exit_code") not in (0, None)
            if failed and SANDBOX_DENIAL.search(output[-2000:]):
                self.denials.append(describe_call("shell", {"command": _codex_command(item)}))
            return [AgentEvent("tool_result", clip_event_text(output), tool="shell",
                               data={"exit_code": item.get("exit_code"), "is_error": failed})]
        if itype == "file_change":
            changes = item.get("changes") if isinstance(item.get("changes"), list) else []
            paths = ", ".join(f"{c.get('kind')} {c.get('path')}" for c in changes if isinstance(c, dict))
            return [AgentEvent("tool_use", paths, tool="apply_patch"),
                    AgentEvent("tool_result", str(item.get("status", "")), tool="apply_patch")]
        if itype == "mcp_tool_call":
            return [AgentEvent("tool_use", f"{item.get('server')}.{item.get('tool')}",
                               tool="mcp", data={"status": item.get("status")})]
        if itype == "error":
            return [AgentEvent("notice", str(item.get("message", "")))]
        return []

    def final_text(self) -> str:
        return self.messages[-1] if self.messages else ""

    def cost(self) -> tuple[float | None, bool]:
        usd = estimate_cost(self.model, self.tokens)
        return usd, usd is not None

    def succeeded(self, exit_code: int | None) -> bool:
        return exit_code == 0 and not self.turn_failed

    def read_rollout(self, codex_home: Path) -> None:
        """Add the sandbox refusals of this session's rollout file to ``denials``.

        Codex 0.171 prints no ``--json`` item for a command its sandbox refused (the model
        gets the failure, the stream says nothing), but it records every call and output in
        ``$CODEX_HOME/sessions/YYYY/MM/DD/rollout-<time>-<thread id>.jsonl``.
        """
        if not self.session_id:
            return
        for path in sorted(codex_home.glob(f"sessions/*/*/*/rollout-*-{self.session_id}.jsonl")):
            try:
                lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
            except OSError:
                continue
            for denial in codex_rollout_denials(lines):
                if denial not in self.denials:
                    self.denials.append(denial)


# A command the codex sandbox refused (workspace-write keeps .git read-only). Codex 0.171
# prints no --json item for such a command; its rollout file has it (read_rollout).
SANDBOX_DENIAL = re.compile(r"Read-only file system|Operation not permitted", re.I)


def codex_rollout_denials(lines: list[str]) -> list[str]:
    """``shell(<cmd>)`` for each call of a codex rollout whose output is a sandbox refusal."""
    commands: dict[str, str] = {}
    denials: list[str] = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        payload = entry.get("payload") if isinstance(entry, dict) else None
        if not isinstance(payload, dict) or entry.get("type") != "response_item":
            continue
        kind = payload.get("type")
        call_id = str(payload.get("call_id"))
        if kind == "function_call":
            try:
                args = json.loads(payload.get("arguments") or "{}")
            except ValueError:
                args = {}
            command = args.get("cmd") or args.get("command") if isinstance(args, dict) else None
            commands[call_id] = describe_call("shell", {"command": command or payload.get("name")})
        elif kind == "custom_tool_call":  # apply_patch: name the files it touches
            files = re.findall(r"^\*\*\* (?:Add|Update|Delete) File: (.+)$",
                               str(payload.get("input", "")), re.M)
            commands[call_id] = f"{payload.get('name')} {', '.join(files)}".strip()
        elif kind == "function_call_output":
            output = str(payload.get("output", ""))
            exited = re.search(r"Process exited with code (\d+)", output)
            if exited and exited.group(1) != "0" and SANDBOX_DENIAL.search(output[-2000:]):
                denials.append(commands.get(call_id, "shell(?)"))
        elif kind == "custom_tool_call_output":
            # "patch rejected: writing is blocked by read-only sandbox; rejected by user
            # approval settings" (measured by the model-server helper on 0.171)
            output = str(payload.get("output", ""))
            if re.search(r"rejected|blocked by .*sandbox", output[:2000], re.I):
                denials.append(commands.get(call_id, "apply_patch"))
    return list(dict.fromkeys(denials))


def _codex_command(item: dict[str, Any]) -> str:
    """The command of a command_execution item without codex's ``/bin/bash -lc`` wrapper."""
    command = str(item.get("command", ""))
    match = re.match(r"^/bin/(?:ba)?sh -l?c (?P<q>['\"])(?P<body>.*)(?P=q)$", command, re.S)
    return match.group("body") if match else command


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


PARSERS: dict[str, type[OutputParser]] = {
    "codex": CodexParser, "gemini": GeminiParser, "aider": AiderParser, "command": OutputParser,
}
