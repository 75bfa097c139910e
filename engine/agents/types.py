"""The agent interface: requests, events, results and the backend base class."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from engine.models import AttemptStatus


class AgentRole(StrEnum):
    WORKER = "worker"
    ARCHITECT = "architect"
    EDITOR = "editor"
    PLANNER = "planner"
    REVIEWER = "reviewer"
    FIXUP = "fixup"
    OBJECTIVE = "objective_check"
    STRATEGIST = "strategist"
    AMBITION = "ambition"
    REFLECTION = "reflection"


class FailureReason(StrEnum):
    """Why a session failed. The controller reacts differently: stop, back off or retry."""

    AUTH = "auth"  # stop the mission: credentials are wrong or missing
    USAGE_LIMIT = "usage_limit"  # subscription/session limit: back off until it resets
    OVERLOADED = "overloaded"  # 529: retry later
    RATE_LIMIT = "rate_limit"  # transient 429: retry with back-off
    MAX_TURNS = "max_turns"
    BUDGET = "budget"
    TIMEOUT = "timeout"
    STALLED = "stalled"  # no output for ``[agent] stall_seconds``: ended, retried once
    CANCELLED = "cancelled"
    CRASH = "crash"  # the CLI died without a result
    BAD_OUTPUT = "bad_output"  # exited 0 but never produced a usable result
    API_ERROR = "api_error"
    NOT_FOUND = "not_found"  # the CLI or the cassette is missing
    DENIED = "denied"  # the agent's tool calls were refused (permissions) and nothing was done


# Status values of AgentResult: the attempt statuses it is stored as (plain strings).
COMPLETED = AttemptStatus.COMPLETED.value
FAILED = AttemptStatus.FAILED.value
BLOCKED = AttemptStatus.BLOCKED.value
TIMEOUT = AttemptStatus.TIMEOUT.value
BUDGET = AttemptStatus.BUDGET.value
ERROR = AttemptStatus.ERROR.value
RESULT_STATUSES = (COMPLETED, FAILED, BLOCKED, TIMEOUT, BUDGET, ERROR)

EVENT_TYPES = (
    "init", "text", "thinking", "tool_use", "tool_result", "usage", "retry", "rate_limit",
    "notice", "stderr",
)


@dataclass
class AgentRequest:
    """One agent session to run."""

    role: AgentRole
    prompt: str
    workdir: Path
    model: str = "sonnet"
    max_turns: int = 50
    budget_usd: float | None = None
    timeout_s: float = 1800.0
    stall_s: float | None = None  # end the session after this many seconds without output
    allowed_tools: list[str] = field(default_factory=list)
    permission_mode: str = "acceptEdits"
    resume_session_id: str | None = None
    session_id: str | None = None
    system_prompt: str | None = None
    read_only: bool = False
    # unit_id, unit_title, specialist, attempt, approach, epoch, candidate
    metadata: dict[str, str] = field(default_factory=dict)
    # An MCP config file of tools for this session (engine/services/session_tools.py);
    # backends that cannot load one ignore it.
    mcp_config: Path | None = None
    # The project's verification command (aider runs it after each edit: --auto-test).
    verify_command: str = ""


@dataclass
class TokenUsage:
    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(
            self.input + other.input,
            self.output + other.output,
            self.cache_read + other.cache_read,
            self.cache_write + other.cache_write,
        )

    @property
    def total(self) -> int:
        return self.input + self.output + self.cache_read + self.cache_write

    def as_dict(self) -> dict[str, int]:
        return {
            "input": self.input, "output": self.output,
            "cache_read": self.cache_read, "cache_write": self.cache_write,
        }


@dataclass
class AgentEvent:
    """Something the agent did, reported as it happens (see ``EVENT_TYPES``)."""

    type: str
    text: str = ""
    tool: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class AgentResult:
    """How a session ended."""

    status: str  # completed|failed|blocked|timeout|budget|error
    summary: str = ""
    text: str = ""  # the final answer text (planner JSON, worker marker, ...)
    cost_usd: float | None = None
    cost_estimated: bool = False
    tokens: TokenUsage = field(default_factory=TokenUsage)
    turns: int = 0
    session_id: str | None = None
    exit_code: int | None = None
    error: str | None = None
    failure_reason: FailureReason | None = None
    # Tool calls the CLI refused: "Write /x/.git/a.py", "Bash(git commit -m x)".
    denials: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == COMPLETED


class AgentUnavailable(Exception):
    """The backend cannot run here; the message says what is missing and how to fix it."""


EventCallback = Callable[[AgentEvent], None]


class AgentBackend(ABC):
    """Runs one agent session per :meth:`run` call."""

    name: str = "agent"

    @abstractmethod
    def check_available(self) -> None:
        """Raise :class:`AgentUnavailable` if this backend cannot run (checked at mission start)."""

    @abstractmethod
    async def run(
        self, request: AgentRequest, on_event: EventCallback | None = None
    ) -> AgentResult:
        """Run the session, calling ``on_event`` for each event; never raises for agent failures."""


def stalled_result(result: AgentResult, stall_s: float | None) -> AgentResult:
    """Mark ``result`` as ended for silence: status ``timeout``, reason ``stalled``."""
    result.status = TIMEOUT
    result.failure_reason = FailureReason.STALLED
    result.error = f"stalled: no output for {stall_s:g} s"
    result.summary = result.error
    return result


def summarize(text: str, limit: int = 200) -> str:
    """A one-line summary: the first non-empty line of ``text``, shortened."""
    for line in text.strip().splitlines():
        line = line.strip()
        if line:
            return line if len(line) <= limit else line[: limit - 1] + "\u2026"
    return ""


def emit(on_event: EventCallback | None, event: AgentEvent) -> None:
    """Call ``on_event`` if given (a small helper shared by the backends)."""
    if on_event is not None:
        on_event(event)
