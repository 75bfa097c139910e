"""codex ``exec --json`` output (codex 0.171.0): thread/turn/item events, usage on
``turn.completed``, and the sandbox refusals only its rollout file records.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.agents.claude_values import clip_event_text
from engine.agents.command_parsers.base import OutputParser, _n
from engine.agents.permissions import describe_call
from engine.agents.pricing import estimate_cost
from engine.agents.types import (
    AgentEvent,
    TokenUsage,
)


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
