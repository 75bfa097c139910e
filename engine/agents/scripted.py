"""The scripted backend: replays a cassette, making real edits and commits.

No API key, no network. ``mc demo`` and the pipeline tests use it. Each request
consumes the first matching cassette entry and performs its actions in
``request.workdir``; ``run`` actions are real subprocesses under the same
process-group control as the real agents.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import anyio

from engine.agents.cassette import Cassette, CassetteError, Interaction, load_cassette, substitute
from engine.agents.gitfacts import GitError, commit_all
from engine.agents.process import Line, build_env, run_streaming
from engine.agents.types import (
    COMPLETED,
    ERROR,
    FAILED,
    TIMEOUT,
    AgentBackend,
    AgentEvent,
    AgentRequest,
    AgentResult,
    AgentUnavailable,
    EventCallback,
    FailureReason,
    TokenUsage,
    emit,
    summarize,
)

OUTPUT_LIMIT = 8000


class _ActionFailed(Exception):
    def __init__(self, message: str, reason: FailureReason | None = None, status: str = FAILED):
        super().__init__(message)
        self.reason = reason
        self.status = status


class ScriptedBackend(AgentBackend):
    """Plays back a cassette (a path, or an already loaded :class:`Cassette`)."""

    name = "scripted"

    def __init__(
        self,
        cassette: str | Path | Cassette | None,
        *,
        kill_grace: float = 5.0,
        env_passthrough: Iterable[str] = (),
        env_deny: Iterable[str] = (),
    ) -> None:
        self._path = None if isinstance(cassette, Cassette) else cassette
        self._cassette = cassette if isinstance(cassette, Cassette) else None
        self.kill_grace = kill_grace
        self.env_passthrough = list(env_passthrough)
        self.env_deny = list(env_deny)

    @property
    def cassette(self) -> Cassette:
        if self._cassette is None:
            if self._path is None:
                raise CassetteError("no cassette configured: set [agent] cassette = \"file.toml\"")
            self._cassette = load_cassette(self._path)
        return self._cassette

    def check_available(self) -> None:
        try:
            self.cassette  # noqa: B018 - loads and validates it
        except CassetteError as exc:
            raise AgentUnavailable(f"scripted backend: {exc}") from None

    async def run(
        self, request: AgentRequest, on_event: EventCallback | None = None
    ) -> AgentResult:
        try:
            cassette = self.cassette
        except CassetteError as exc:
            return AgentResult(status=ERROR, error=str(exc), failure_reason=FailureReason.NOT_FOUND,
                               summary="cassette unavailable")
        entry = cassette.take(request)
        session_id = request.resume_session_id or request.session_id or str(uuid.uuid4())
        if entry is None:
            error = (f"no cassette entry matches role={request.role} "
                     f"metadata={json.dumps(request.metadata, sort_keys=True)}")
            return AgentResult(status=ERROR, error=error, summary=error, session_id=session_id,
                               failure_reason=FailureReason.NOT_FOUND, exit_code=None)
        emit(on_event, AgentEvent("init", f"scripted session {session_id} ({entry.describe()})",
                                  data={"session_id": session_id, "model": request.model,
                                        "entry": entry.index + 1}))
        values = {
            "unit_id": "", "unit_title": "", "attempt": "", **request.metadata,
            "workdir": str(request.workdir), "role": str(request.role), "model": request.model,
        }
        player = _Player(self, request, entry, values, on_event)
        status, error, reason = COMPLETED, None, None
        with anyio.move_on_after(request.timeout_s) as deadline:
            try:
                await player.play()
            except _ActionFailed as exc:
                status, error, reason = exc.status, str(exc), exc.reason
        if deadline.cancelled_caught:
            status, error, reason = TIMEOUT, "timed out; the agent was killed", FailureReason.TIMEOUT
        elif error is None and entry.status is not None:
            status = entry.status
        tokens = TokenUsage(entry.input_tokens, entry.output_tokens,
                            entry.cache_read_tokens, entry.cache_write_tokens)
        if tokens.total:
            emit(on_event, AgentEvent("usage", f"tokens in {tokens.input} out {tokens.output}",
                                      data={"total": tokens.as_dict()}))
        text = "\n".join(player.texts)
        summary = entry.summary or summarize(error or text) or f"scripted {request.role}"
        return AgentResult(
            status=status, summary=substitute(summary, values), text=text,
            cost_usd=entry.cost_usd, cost_estimated=False, tokens=tokens, turns=entry.turns,
            session_id=session_id, exit_code=0 if status == COMPLETED else 1, error=error,
            failure_reason=reason,
        )


class _Player:
    """Performs one entry's actions."""

    def __init__(self, backend: ScriptedBackend, request: AgentRequest, entry: Interaction,
                 values: dict[str, str], on_event: EventCallback | None) -> None:
        self.backend = backend
        self.request = request
        self.entry = entry
        self.values = values
        self.on_event = on_event
        self.texts: list[str] = []
        self.root = Path(request.workdir).resolve()

    def sub(self, value: Any) -> str:
        return substitute(str(value), self.values)

    def event(self, kind: str, text: str = "", tool: str | None = None, **data: Any) -> None:
        emit(self.on_event, AgentEvent(kind, text, tool=tool, data=data))

    def path(self, raw: Any) -> Path:
        rel = self.sub(raw)
        target = (self.root / rel).resolve()
        if target != self.root and self.root not in target.parents:
            raise _ActionFailed(f"path {rel!r} is outside the worktree")
        return target

    async def play(self) -> None:
        for action in self.entry.actions:
            await getattr(self, f"do_{action['type']}")(action)

    async def do_write(self, action: dict[str, Any]) -> None:
        target = self.path(action["path"])
        content = self.sub(action["content"])
        self.event("tool_use", str(target.relative_to(self.root)), tool="Write")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")
        self.event("tool_result", f"wrote {len(content.encode())} bytes", tool="Write")

    async def do_patch(self, action: dict[str, Any]) -> None:
        target = self.path(action["path"])
        rel = str(target.relative_to(self.root))
        find, replace = self.sub(action["find"]), self.sub(action["replace"])
        self.event("tool_use", rel, tool="Edit")
        try:
            content = target.read_text(encoding="utf-8")
        except OSError as exc:
            self.event("tool_result", str(exc), tool="Edit", is_error=True)
            raise _ActionFailed(f"patch {rel}: {exc.strerror or exc}") from None
        count = int(action.get("count", 1))
        if action.get("regex"):  # multiline regex; `replace` may use \1 groups
            content, found = re.subn(find, replace, content, count=max(count, 0),
                                     flags=re.MULTILINE)
        else:
            found = content.count(find)
            content = content.replace(find, replace, count if count > 0 else -1)
        if not found:
            self.event("tool_result", "text to replace not found", tool="Edit", is_error=True)
            raise _ActionFailed(f"patch {rel}: text to replace not found: {find[:80]!r}")
        target.write_text(content, encoding="utf-8")
        self.event("tool_result", "patched", tool="Edit")

    async def do_delete(self, action: dict[str, Any]) -> None:
        target = self.path(action["path"])
        self.event("tool_use", str(target.relative_to(self.root)), tool="Delete")
        if target.is_dir():
            raise _ActionFailed(f"delete {action['path']}: is a directory")
        target.unlink(missing_ok=True)
        self.event("tool_result", "deleted", tool="Delete")

    async def do_run(self, action: dict[str, Any]) -> None:
        command = self.sub(action["command"])
        self.event("tool_use", command, tool="Bash")
        lines: list[str] = []
        size = 0

        def on_line(line: Line) -> None:
            nonlocal size
            if size < OUTPUT_LIMIT:
                lines.append(line.text)
                size += len(line.text) + 1

        outcome = await run_streaming(
            ["/bin/sh", "-c", command], cwd=self.root,
            env=build_env(passthrough=self.backend.env_passthrough, deny=self.backend.env_deny),
            on_line=on_line, timeout=float(action.get("timeout", self.request.timeout_s)),
            kill_grace=self.backend.kill_grace,
        )
        output = "\n".join(lines)[:OUTPUT_LIMIT]
        failed = outcome.timed_out or outcome.exit_code != 0
        self.event("tool_result", output, tool="Bash", exit_code=outcome.exit_code, is_error=failed)
        if failed and action.get("check", True):
            what = "timed out" if outcome.timed_out else f"exited with {outcome.exit_code}"
            raise _ActionFailed(f"command {command!r} {what}: {output[-500:]}")

    async def do_commit(self, action: dict[str, Any]) -> None:
        message = self.sub(action["message"])
        self.event("tool_use", f"git commit -m {message!r}", tool="Bash")
        try:
            sha = await commit_all(self.root, message)
        except GitError as exc:
            self.event("tool_result", str(exc), tool="Bash", is_error=True)
            raise _ActionFailed(str(exc)) from None
        self.event("tool_result", f"committed {sha[:12]}" if sha else "nothing to commit",
                   tool="Bash")

    async def do_text(self, action: dict[str, Any]) -> None:
        text = self.sub(action["text"])
        self.texts.append(text)
        self.event("text", text)

    async def do_tool(self, action: dict[str, Any]) -> None:
        tool = self.sub(action["tool"])
        self.event("tool_use", self.sub(action.get("input", "")), tool=tool)
        self.event("tool_result", self.sub(action.get("output", "")), tool=tool,
                   is_error=bool(action.get("is_error", False)))

    async def do_sleep(self, action: dict[str, Any]) -> None:
        await anyio.sleep(float(action["seconds"]))

    async def do_fail(self, action: dict[str, Any]) -> None:
        reason = FailureReason(action["reason"]) if "reason" in action else None
        raise _ActionFailed(self.sub(action.get("error", "scripted failure")), reason,
                            action.get("status", FAILED))

    async def do_hang(self, action: dict[str, Any]) -> None:
        await anyio.sleep_forever()
