"""One-shot LLM calls (planner, ambition, reviewer, objective check, strategist).

They run through the same agent backend as the workers, read-only, in an
auxiliary worktree at the current ``mc/green`` head, and are recorded as attempts.
"""

from __future__ import annotations

from pathlib import Path

import anyio

from engine.agents import (
    AgentBackend,
    AgentRequest,
    AgentResult,
    AgentRole,
    FailureReason,
    run_recorded,
)
from engine.agents.placement import running_on
from engine.config import MissionConfig
from engine.store import Store


class LlmCallFailed(RuntimeError):
    """A one-shot call failed; ``reason`` says whether to stop, back off or retry."""

    def __init__(self, role: str, result: AgentResult) -> None:
        self.role = role
        self.result = result
        self.reason = result.failure_reason
        super().__init__(
            f"{role} call failed ({result.failure_reason or result.status}): "
            f"{result.error or result.summary or 'no output'}"
        )


ROLE_MODELS = {
    AgentRole.PLANNER: "planner",
    AgentRole.AMBITION: "planner",
    AgentRole.REFLECTION: "planner",
    AgentRole.REVIEWER: "reviewer",
    AgentRole.OBJECTIVE: "reviewer",
    AgentRole.STRATEGIST: "strategist",
}

# Role instructions go in the system prompt (`--append-system-prompt` for Claude Code), so they
# survive context compaction; the task itself stays in the prompt.
ROLE_SYSTEM_PROMPTS = {
    AgentRole.PLANNER: "You are Mission Control's planner. Answer with the JSON object asked for.",
    AgentRole.AMBITION: "You judge plans for Mission Control. Answer with the JSON object asked for.",
    AgentRole.REVIEWER: "You are Mission Control's code reviewer. Do not edit files. "
    "Answer with the JSON object asked for.",
    AgentRole.OBJECTIVE: "You verify objectives for Mission Control. Do not edit files. "
    "Answer with the JSON object asked for.",
    AgentRole.STRATEGIST: "You are Mission Control's strategist. Answer with the JSON object asked for.",
    AgentRole.REFLECTION: "You reflect on failed work for Mission Control. Do not edit files. "
    "Answer with the JSON object asked for.",
}

RETRYABLE = {FailureReason.OVERLOADED, FailureReason.RATE_LIMIT, FailureReason.API_ERROR}


class LlmCaller:
    """``await caller.ask(role, prompt)`` -> the model's final text."""

    def __init__(
        self,
        store: Store,
        backend: AgentBackend,
        config: MissionConfig,
        *,
        mission_id: int,
        workdir: Path,
        max_retries: int = 3,
        backoff_seconds: float = 2.0,
    ) -> None:
        self.store = store
        self.backend = backend
        self.config = config
        self.mission_id = mission_id
        self.workdir = workdir
        self.max_retries = max_retries
        self.backoff_seconds = backoff_seconds

    def model_for(self, role: AgentRole) -> str:
        attr = ROLE_MODELS.get(role)
        return getattr(self.config.models, attr) if attr else self.config.scheduler.model

    async def ask(self, role: str | AgentRole, prompt: str, *, metadata: dict[str, str] | None = None) -> str:
        role = AgentRole(role)
        request = AgentRequest(
            role=role,
            prompt=prompt,
            workdir=self.workdir,
            model=self.model_for(role),
            max_turns=min(self.config.agent.max_turns, 20),
            budget_usd=self.config.scheduler.budget.max_per_session_usd,
            timeout_s=self.config.scheduler.session_timeout,
            stall_s=self.config.agent.stall_seconds,
            permission_mode="plan",
            read_only=True,
            system_prompt=ROLE_SYSTEM_PROMPTS.get(role),
            metadata=metadata or {},
        )
        for attempt in range(self.max_retries + 1):
            with running_on(None):  # the engine's own calls stay here, never on a worker host
                _, result = await run_recorded(
                    self.store, self.backend, request, mission_id=self.mission_id
                )
            if result.status == "completed":
                return result.text or result.summary
            if result.failure_reason in RETRYABLE and attempt < self.max_retries:
                delay = self.backoff_seconds * (2**attempt)
                self.store.append_event(
                    "log", mission_id=self.mission_id, level="warning",
                    message=f"{role} call: {result.failure_reason}; retrying in {delay:.0f}s",
                )
                await anyio.sleep(delay)
                continue
            raise LlmCallFailed(str(role), result)
        raise AssertionError("unreachable")
