"""The Claude Code backend: ``claude -p --output-format stream-json --verbose ...``.

The prompt goes on stdin, never in argv (argv is size-limited and visible in ``ps``).
Each stdout line is parsed as it arrives (:mod:`engine.agents.claude_stream`).
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterable

from engine.agents.claude_stream import ClaudeStreamParser
from engine.agents.process import Line, build_env, run_streaming
from engine.agents.types import (
    ERROR,
    AgentBackend,
    AgentEvent,
    AgentRequest,
    AgentResult,
    AgentUnavailable,
    EventCallback,
    FailureReason,
    emit,
    stalled_result,
)

INSTALL_HINT = (
    "install Claude Code (`npm install -g @anthropic-ai/claude-code`) and log in with "
    "`claude` once, or choose another backend with [agent] backend = ..."
)
MAX_STDERR_EVENTS = 200


class ClaudeBackend(AgentBackend):
    """Runs Claude Code headless and parses its stream-json output."""

    name = "claude"

    def __init__(
        self,
        *,
        executable: str = "claude",
        kill_grace: float = 5.0,
        result_grace: float = 5.0,
        env_passthrough: Iterable[str] = (),
        env_deny: Iterable[str] = (),
    ) -> None:
        self.executable = executable
        self.kill_grace = kill_grace
        self.result_grace = result_grace
        self.env_passthrough = list(env_passthrough)
        self.env_deny = list(env_deny)

    def _env(self) -> dict[str, str]:
        return build_env(passthrough=self.env_passthrough, deny=self.env_deny)

    def resolve(self) -> str | None:
        return shutil.which(self.executable, path=self._env().get("PATH"))

    def check_available(self) -> None:
        if self.resolve() is None:
            raise AgentUnavailable(f"`{self.executable}` was not found on PATH: {INSTALL_HINT}")

    def build_argv(
        self, request: AgentRequest, executable: str, session_id: str | None = None
    ) -> list[str]:
        """The command line (the prompt is not in it: it goes on stdin)."""
        argv = [
            executable, "-p", "--output-format", "stream-json", "--verbose",
            "--model", request.model, "--max-turns", str(request.max_turns),
        ]
        mode = "plan" if request.read_only else request.permission_mode
        if mode:
            argv += ["--permission-mode", mode]
        if request.allowed_tools and mode != "plan":
            argv += ["--allowedTools", ",".join(request.allowed_tools)]
        if request.budget_usd is not None:
            argv += ["--max-budget-usd", f"{request.budget_usd:.4f}".rstrip("0").rstrip(".")]
        if request.resume_session_id:
            argv += ["--resume", request.resume_session_id]
        else:
            argv += ["--session-id", session_id or request.session_id or str(uuid.uuid4())]
        if request.system_prompt:
            argv += ["--append-system-prompt", request.system_prompt]
        if request.mcp_config is not None:
            argv += ["--mcp-config", str(request.mcp_config), "--strict-mcp-config"]
        return argv

    async def run(
        self, request: AgentRequest, on_event: EventCallback | None = None
    ) -> AgentResult:
        executable = self.resolve()
        if executable is None:
            return AgentResult(
                status=ERROR, failure_reason=FailureReason.NOT_FOUND,
                error=f"`{self.executable}` was not found on PATH: {INSTALL_HINT}",
                summary=f"{self.executable} not found",
            )
        # A fresh id per run unless the caller chose one (a request may be retried as is).
        session_id = request.resume_session_id or request.session_id or str(uuid.uuid4())
        parser = ClaudeStreamParser(model=request.model, session_id=session_id)
        stderr_events = 0

        def on_line(line: Line) -> None:
            nonlocal stderr_events
            if line.stream == "stderr":
                stderr_events += 1
                if stderr_events <= MAX_STDERR_EVENTS:
                    emit(on_event, AgentEvent("stderr", line.text[:2000]))
                elif stderr_events == MAX_STDERR_EVENTS + 1:
                    emit(on_event, AgentEvent("notice", "more stderr output not shown"))
                return
            for event in parser.feed(line.text, truncated=line.truncated, size=line.size):
                emit(on_event, event)

        try:
            outcome = await run_streaming(
                self.build_argv(request, executable, session_id),
                cwd=request.workdir,
                env=self._env(),
                on_line=on_line,
                stdin=request.prompt.encode("utf-8"),
                timeout=request.timeout_s,
                kill_grace=self.kill_grace,
                result_seen=lambda: parser.over,
                result_grace=self.result_grace, stall_timeout=request.stall_s,
            )
        except OSError as exc:
            return AgentResult(
                status=ERROR, failure_reason=FailureReason.CRASH,
                error=f"could not start {executable}: {exc}", summary="could not start claude",
            )
        result = parser.finish(
            exit_code=outcome.exit_code,
            timed_out=outcome.timed_out,
            stderr_tail=outcome.stderr_tail,
            requested_model=request.model,
        )
        return stalled_result(result, request.stall_s) if outcome.stalled else result
