"""Configuration schema for ``mission-control.toml``.

The file is parsed with :mod:`tomllib`, then environment variables with the
prefix ``MC_`` (``__`` separates nesting levels) are layered on top, and the
result is validated by pydantic-settings models. Every problem becomes one
:class:`ConfigError` whose message names the key path, never a traceback.

Size: one pydantic schema of the whole ``mission-control.toml`` (a model per table) and the
loader that names a bad key's path, kept together so a new key is added in one place.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from engine.config_rules import SECRET_INPUT, GitRemote, StrictBools, env_bools
from engine.host_config import HostConfig, host_names

DEFAULT_CONFIG_NAME = "mission-control.toml"
ENV_PREFIX = "MC_"


class ConfigError(Exception):
    """A configuration problem, already phrased for the user."""


class Section(StrictBools):
    """Base for every section: unknown keys are errors, booleans are TOML booleans."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# --------------------------------------------------------------------------- target
class VerificationConfig(Section):
    command: str = Field("pytest -q", description="Shell command that must pass before promotion.")
    timeout: float = Field(600.0, gt=0, description="Seconds before the verification is killed.")
    baseline: Literal["tolerate", "must_pass"] = Field(
        "tolerate",
        description="When the command fails on mc/green before any change: tolerate = judge "
        "each change against those failures (only new ones are blamed); must_pass = stop the "
        "mission before any agent runs.",
    )
    flaky_reruns: int = Field(
        1, ge=0, le=3,
        description="Re-runs of a failed verification on the same commit before anyone is "
        "blamed; a pass on a re-run records the failed tests as flaky.",
    )
    precheck: bool = Field(
        True,
        description="Also run the command in each unit's worktree when its agent is done, as "
        "a pull request's CI runs before a merge queue takes it; a unit that fails it goes "
        "straight to fixup instead of into a merge-queue batch it would break (one more "
        "verification per unit, run by the workers in parallel). Skipped when the merge queue "
        "would verify the branch at once, alone, and for the mission's last work (no other "
        "agent running, nothing waiting to start; see precheck_when_queue_idle). Off: fewer "
        "verifications (a CPU-bound suite on a small machine), more bisection in the queue.",
    )
    precheck_when_queue_idle: bool = Field(
        False,
        description="Precheck also when the merge queue would verify the unit's branch at "
        "once and alone on mc/green (nothing queued ahead, a verify slot free, no review "
        "gate first), and for the mission's last work: the precheck then only runs the same "
        "verification first (or protects no branch queued after it) and adds its time to "
        "the unit's path.",
    )


class TargetConfig(Section):
    name: str = Field("project", description="Human name of the target project.")
    path: Path = Field(Path("."), description="Path of the target git repository.")
    branch: str | None = Field(
        None,
        description="Base branch that mc/green starts from (default: the remote's default "
        "branch, origin/HEAD, else the branch checked out in the repository).",
    )
    objective: str = Field("", description="What the mission should achieve.")
    verification: VerificationConfig = Field(default_factory=VerificationConfig)


class WorktreeConfig(Section):
    include: list[str] = Field(
        default_factory=list,
        description="Globs (relative to the repository) of git-ignored files such as .env "
        "copied from your checkout into every agent and verify worktree; never committed. "
        "A .worktreeinclude file (gitignore-style lines) in the repository adds to them.",
    )


# --------------------------------------------------------------------------- scheduler
class BudgetConfig(Section):
    max_per_session_usd: float = Field(5.0, gt=0, description="Cap for one agent session.")
    max_per_run_usd: float = Field(50.0, gt=0, description="Cap for the whole mission.")


class ParallelConfig(Section):
    num_workers: int = Field(4, ge=1, le=64, description="Agents running at once.")
    pool_dir: Path | None = Field(
        None,
        description="Where the agents' worktrees live; must be outside any .git directory "
        "(default: <user cache dir>/mission-control/pools/<repo>-<hash>).",
    )


class SchedulerConfig(Section):
    model: str = Field("sonnet", description="Model for worker agents.")
    session_timeout: float = Field(1800.0, gt=0, description="Seconds before an agent is killed.")
    stacked_branches: bool = Field(
        True,
        description="Start a unit as soon as its dependencies' agents are done, on a branch "
        "stacked on their work, instead of waiting for them to merge; it merges only after "
        "them (docs/gitops.md, 'Stacked branches').",
    )
    stack_on_siblings: bool = Field(
        True,
        description="With stacked_branches: a unit also starts on the finished, not yet "
        "merged work of its plan-tree siblings (they tend to touch the same files, and two "
        "siblings started on the same mc/green conflict when the second merges); it then "
        "merges after them, and runs again from mc/green if one of them fails "
        "(docs/gitops.md, 'Stacked branches').",
    )
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    parallel: ParallelConfig = Field(default_factory=ParallelConfig)


class RoundsConfig(Section):
    max_rounds: int = Field(10, ge=1, description="Maximum epochs in a mission.")
    stall_threshold: int = Field(3, ge=1, description="Epochs without improvement before stopping.")


class PlannerConfig(Section):
    max_depth: int = Field(2, ge=1, le=5, description="Depth of the recursive plan tree.")
    max_children_per_node: int = Field(5, ge=1, le=20, description="Fan-out per plan node.")


class ContinuousConfig(Section):
    max_wall_time_seconds: float = Field(7200.0, gt=0, description="Stop the mission after this long.")
    min_ambition_score: float = Field(
        4.0, ge=0, le=10, description="Plans scoring below this (1-10) are sent back."
    )
    max_replan_attempts: int = Field(2, ge=0, description="Replans after an ambition rejection.")
    verify_objective_completion: bool = Field(
        True, description="Ask the check model whether the objective is met before ending."
    )
    max_objective_checks: int = Field(3, ge=1, description="Objective checks per mission.")


class ReviewConfig(Section):
    gate_completion: bool = Field(True, description="Review each unit's diff before the merge queue.")
    min_review_score: float = Field(6.0, ge=0, le=10, description="Units scoring below this are retried.")
    max_review_retries: int = Field(1, ge=0, description="Retries of a unit rejected by review.")


class GreenBranchConfig(Section):
    auto_push: bool = Field(False, description="Push mc/green after promotion (fast-forward only).")
    push_branch: str | None = Field(
        None, description="Remote branch that mc/green is pushed to (default: the base branch)."
    )
    remote: GitRemote = Field(
        "origin", description="Remote to push to: a remote's name or a URL; a URL never holds a "
        "credential (git gets it from a credential helper or GIT_ASKPASS).")
    fixup_max_attempts: int = Field(2, ge=0, description="Fixup rounds before a unit goes back to the planner.")
    fixup_candidates: int = Field(
        3, ge=1, le=8,
        description="Most agents trying different fixes in parallel in one fixup round.",
    )
    fixup_min_candidates: int = Field(
        1, ge=1, le=8,
        description="Candidates a fixup round waits for slots for, ahead of READY units; the "
        "rest, up to fixup_candidates, run only on slots free when it starts.",
    )


DiscoveryTrack = Literal["feature", "quality", "security", "tests"]


class DiscoveryConfig(Section):
    enabled: bool = Field(
        False, description="Run auto-discovery (`mc discover`) when a mission ends completed, "
        "before the strategist picks the next objective from the backlog; `mc discover` runs "
        "it by hand whatever this says.")
    tracks: list[DiscoveryTrack] = Field(
        default_factory=lambda: ["quality", "tests", "security"],
        description="Discovery tracks: feature, quality, security, tests.",
    )
    research_enabled: bool = Field(
        False, description="Add a web research step (needs network; says so when there is none).")
    track_weights: dict[DiscoveryTrack, float] = Field(
        default_factory=lambda: {"security": 1.5, "tests": 1.2, "quality": 1.0, "feature": 1.0},
        description="Backlog priority weight per track (score = weight x impact / effort x aging).",
    )
    max_items: int = Field(20, ge=1, le=200, description="Backlog items one discovery run adds at most.")


class ModelsConfig(Section):
    planner: str = Field("opus", description="Model for planning and the ambition gate.")
    reviewer: str = Field("sonnet", description="Model for reviews and the objective check.")
    strategist: str = Field("opus", description="Model proposing the next objective.")


class TelegramConfig(Section):
    enabled: bool = Field(False, description="Telegram approvals: a message with Approve / Deny.")
    chat_id: str = Field("", description="The one chat that receives requests and may decide.")
    token_env: str = Field(
        "MC_TELEGRAM_TOKEN", description="Environment variable holding the bot token."
    )
    api_url: str = Field(
        "https://api.telegram.org", description="Bot API base URL (a local Bot API server)."
    )
    long_poll: int = Field(25, ge=0, le=50, description="Seconds one getUpdates call waits.")


HitlGate = Literal["push", "large_merge", "plan", "fixup"]


class HitlConfig(Section):
    enabled: bool = Field(True, description="Human approval gates on or off.")
    gates: list[HitlGate] = Field(
        default_factory=lambda: ["push"],
        description="Gated actions: push, large_merge, plan, fixup (docs/hitl.md).",
    )
    poll_timeout: float = Field(300.0, gt=0, description="Seconds before the safe default (deny).")
    large_merge_lines: int = Field(500, ge=1, description="Diff size that counts as large.")
    approval_file: Path | None = Field(
        None, description="File of `approve ID` / `deny ID reason` lines the engine reads.")
    telegram: TelegramConfig = Field(
        default_factory=TelegramConfig,
        description="A [hitl.telegram] table, or true / false: on with defaults / off.",
    )

    @field_validator("telegram", mode="before")
    @classmethod
    def _telegram_switch(cls, value: Any) -> Any:
        """``telegram = true`` (the original tool's form) means on, every other key at its default."""
        if isinstance(value, bool):
            return {"enabled": value}
        return value


class SpeculationConfig(Section):
    enabled: bool = Field(
        False, description="Work the units `units` names with `branch_count` agents each."
    )
    branch_count: int = Field(
        2, ge=1, le=8,
        description="Branches per unit when enabled (1: no branching); each is an agent session "
        "of its own, so up to num_workers x branch_count agents run at once, all costed.",
    )
    selection: Literal["best_score", "tests", "review", "smallest_diff"] = Field(
        "tests",
        description="How the winning branch is chosen: tests = verification in its worktree "
        "(passing, most tests passed, fewest lint errors, then smallest diff); review = review "
        "score; smallest_diff = smallest passing diff; best_score = tests, then review score, "
        "then diff size (the original tool's name).",
    )
    units: Literal["uncertain", "all"] = Field(
        "uncertain",
        description="Which units branch: uncertain = those the planner marks `uncertain`; "
        "all = every unit.",
    )


class DegradationConfig(Section):
    enabled: bool = Field(True, description="Circuit breakers per component (docs/hitl.md).")
    failure_threshold: int = Field(3, ge=1, description="Failures in a row that open a breaker.")
    reset_timeout: float = Field(60.0, gt=0, description="Seconds before dispatch is tried again.")
    fallback_strategy: Literal["reduce_workers", "simple", "fallback_model", "pause"] = Field(
        "reduce_workers",
        description="What an open breaker does: reduce_workers = half the workers; simple = "
        "half the workers, each in one pass (no architect pass; the original tool's name); "
        "fallback_model = workers on fallback_model; pause = dispatch nothing.",
    )
    fallback_model: str = Field(
        "sonnet", description="Worker model while the breaker is open (fallback_model strategy)."
    )


NotifyEvent = Literal["started", "finished", "failed", "stalled", "approval", "budget",
                      "push_rejected"]


class NotifyConfig(Section):
    """``[notify]``: mission events to a webhook, Telegram or the desktop (docs/hitl.md)."""

    enabled: bool = Field(True, description="Notifications on (each target also needs its key).")
    events: list[NotifyEvent] = Field(
        default_factory=lambda: ["started", "finished", "failed", "stalled", "approval",
                                 "budget", "push_rejected"],
        description="What is sent: started, finished, failed, stalled (mission or agent), "
        "approval (pending), budget (50/80/100 %), push_rejected.",
    )
    webhook_url: str = Field("", description="POST a JSON batch here (empty: no webhook).")
    telegram_chat_id: str = Field("", description="Telegram chat for notifications (empty: none).")
    telegram_token_env: str = Field(
        "MC_TELEGRAM_TOKEN", description="Environment variable holding the bot token."
    )
    telegram_api_url: str = Field(
        "https://api.telegram.org", description="Bot API base URL (a local Bot API server)."
    )
    desktop: bool = Field(False, description="notify-send on this machine (when installed).")
    batch_seconds: float = Field(
        5.0, ge=0, description="Events within this window go out as one message."
    )
    max_retries: int = Field(3, ge=0, description="Retries of a failed send (doubling back-off).")
    retry_backoff_seconds: float = Field(1.0, ge=0, description="First wait before a retry.")
    timeout_seconds: float = Field(10.0, gt=0, description="HTTP timeout of one send.")


class EpisodicMemoryConfig(Section):
    enabled: bool = Field(
        True, description="Record an episode per finished unit and mission and feed the "
        "relevant ones to planner and worker prompts (docs/learning.md).")
    max_episodes: int = Field(200, ge=1, description="Episodes kept (the oldest go first).")
    similarity_threshold: float = Field(
        0.3, ge=0, le=1, description="Minimum score to recall: BM25 relative to the best hit, "
        "times the share of query terms matched, times the age decay (0..1).")
    half_life_days: float = Field(
        30.0, ge=0, description="Age decay of a recalled episode's score: halved every this "
        "many days (0: no decay).")
    prompt_tokens: int = Field(
        600, ge=0, description="Token budget of the \"What earlier attempts learned\" section "
        "of each planner and worker prompt (4 characters a token).")


class A2AConfig(Section):
    enabled: bool = Field(
        False, description="Allow `mc a2a` to serve this project over A2A (off: it refuses, "
        "saying how to switch it on).")
    host: str = Field(
        "127.0.0.1", description="Bind address. Anything but loopback is refused unless the "
        "token below is set.")
    port: int = Field(8765, ge=1, le=65535, description="Port.")
    token_env: str = Field(
        "MC_A2A_TOKEN", min_length=1, description="Environment variable holding the bearer "
        "token every request must carry (unset: no token, loopback only).")


class TracingConfig(Section):
    enabled: bool = Field(
        False, description="Export the mission's trace (mission > epoch > unit > agent session, "
        "merge, verification, push, approval) as OpenTelemetry spans over OTLP/HTTP.",
    )
    endpoint: str = Field(
        "http://127.0.0.1:4318",
        description="OTLP/HTTP collector base URL; spans are sent to <endpoint>/v1/traces. "
        "Headers (API keys) only from OTEL_EXPORTER_OTLP_TRACES_HEADERS.",
    )
    service_name: str = Field("mission-control", min_length=1,
                              description="service.name of the spans' resource.")

    @field_validator("endpoint")
    @classmethod
    def _endpoint_url(cls, value: str) -> str:
        from urllib.parse import urlsplit

        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL of an OTLP/HTTP collector")
        if parts.username or parts.password:
            raise ValueError("must not carry credentials: set OTEL_EXPORTER_OTLP_TRACES_HEADERS")
        return value.strip()


class LiveConfig(Section):
    host: str = Field(
        "127.0.0.1",
        description="`mc live` bind address; anything but loopback needs the token below.",
    )
    port: int = Field(8780, ge=1, le=65535, description="`mc live` port.")
    token_env: str = Field(
        "MC_SERVICES_TOKEN",
        description="Environment variable holding the dashboard's bearer token (never the file).",
    )


# --------------------------------------------------------------------------- additions
AgentBackendName = Literal["claude", "codex", "gemini", "aider", "command", "scripted"]


class AgentConfig(Section):
    backend: AgentBackendName = Field("claude", description="Which agent CLI runs the work.")
    command: list[str] = Field(
        default_factory=list,
        description="For backend=command: argv template with {prompt_file} {workdir} {model}.",
    )
    cassette: Path | None = Field(None, description="For backend=scripted: the cassette file.")
    permission_mode: (
        Literal["default", "acceptEdits", "plan", "bypassPermissions", "dontAsk", "auto"] | None
    ) = Field(
        None,
        description="Replaces the workers' permission mode (default: acceptEdits + the profile's "
        "rules; bypassPermissions = no checks at all, opt-in). Read-only roles stay in plan mode.",
    )
    allowed_tools: list[str] = Field(
        default_factory=list,
        description="Extra --allowedTools rules for workers, added to the profile "
        "(e.g. 'Bash(npm run lint:*)').",
    )
    max_turns: int = Field(50, ge=1)
    two_pass: bool = Field(False, description="Architect (read-only) pass, then editor pass.")
    kill_grace_seconds: float = Field(5.0, gt=0, description="SIGTERM to SIGKILL grace period.")
    stall_seconds: float = Field(
        600.0, gt=0, description="Seconds without an output line before a session is ended as "
        "stalled (process group) and retried once; well below scheduler.session_timeout.",
    )
    result_grace_seconds: float = Field(
        5.0, gt=0, description="Seconds an agent may take to exit after its result line."
    )
    retry_backoff_seconds: float = Field(
        10.0, ge=0, description="First wait before re-running a unit after overload / rate limit."
    )
    env_passthrough: list[str] = Field(
        default_factory=list, description="Extra environment variables agents may see."
    )
    session_tools: bool = Field(
        True, description="Serve each Claude Code worker, editor and fixup session (local "
        "hosts) an MCP server of mc tools: run_verification in its worktree, recall (episodic "
        "memory), report_discovery (backlog) and the unit's template tools the planner asked "
        "for (docs/learning.md). false: none, and the planner is not offered templates.")


class MergeQueueConfig(Section):
    batch_size: int = Field(4, ge=1, le=64, description="Branches verified together (1 = serial).")
    speculative_depth: int = Field(
        1, ge=0, le=16,
        description="Batches beyond the head that verify at the same time, each on top of the "
        "candidate ahead of it (Zuul-style); a failure discards what was built on it. 0 = one "
        "batch at a time (batch + bisect). Default 1: measured fastest on 2 slots with the "
        "fewest discarded runs (docs/gitops.md).",
    )
    verify_slots: int = Field(
        2, ge=1, le=16,
        description="Verifications that may run at once (one verify worktree each); used when "
        "speculative_depth > 0.",
    )
    max_output_bytes: int = Field(65536, ge=1024, description="Verification output kept.")


class StateConfig(Section):
    dir: Path | None = Field(
        None, description="Store location (default: <git dir>/mc); the pool too when outside .git."
    )


class UiConfig(Section):
    theme: Literal["mission-control-dark", "mission-control-light"] = "mission-control-dark"
    refresh_hz: float = Field(10.0, gt=0, le=60)
    keys: dict[str, str] = Field(
        default_factory=dict, description="Binding id -> key, e.g. pause = 'ctrl+p'."
    )


# --------------------------------------------------------------------------- root
class _EnvSource(EnvSettingsSource):
    """``MC_*`` variables, with the text of boolean keys (``false``, ``0``, ``off``) made
    booleans: the models take only booleans there, a TOML file's ``"yes"`` is an error."""

    def __call__(self) -> dict[str, Any]:
        return env_bools(super().__call__(), self.settings_cls)


class MissionConfig(BaseSettings):
    """The whole ``mission-control.toml``. Env vars ``MC_SECTION__KEY`` win over the file."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        validate_assignment=True,
        nested_model_default_partial_update=True,
    )

    target: TargetConfig = Field(default_factory=TargetConfig)
    worktree: WorktreeConfig = Field(default_factory=WorktreeConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    rounds: RoundsConfig = Field(default_factory=RoundsConfig)
    planner: PlannerConfig = Field(default_factory=PlannerConfig)
    continuous: ContinuousConfig = Field(default_factory=ContinuousConfig)
    review: ReviewConfig = Field(default_factory=ReviewConfig)
    green_branch: GreenBranchConfig = Field(default_factory=GreenBranchConfig)
    discovery: DiscoveryConfig = Field(default_factory=DiscoveryConfig)
    models: ModelsConfig = Field(default_factory=ModelsConfig)
    hitl: HitlConfig = Field(default_factory=HitlConfig)
    speculation: SpeculationConfig = Field(default_factory=SpeculationConfig)
    degradation: DegradationConfig = Field(default_factory=DegradationConfig)
    notify: NotifyConfig = Field(default_factory=NotifyConfig)
    episodic_memory: EpisodicMemoryConfig = Field(default_factory=EpisodicMemoryConfig)
    a2a: A2AConfig = Field(default_factory=A2AConfig)
    tracing: TracingConfig = Field(default_factory=TracingConfig)
    live: LiveConfig = Field(default_factory=LiveConfig)
    agent: AgentConfig = Field(default_factory=AgentConfig)
    merge_queue: MergeQueueConfig = Field(default_factory=MergeQueueConfig)
    state: StateConfig = Field(default_factory=StateConfig)
    ui: UiConfig = Field(default_factory=UiConfig)
    hosts: list[HostConfig] = Field(
        default_factory=list,
        description="[[hosts]] entries: where agents run (kind local | sandbox | ssh | ray; "
        "docs/hosts.md). "
        "Empty: plain local processes, scheduler.parallel.num_workers slots.",
    )
    plugins: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="[plugins.<name>] sections: each plugin's own settings (docs/plugins.md).",
    )

    @field_validator("hosts")
    @classmethod
    def _unique_host_names(cls, hosts: list[Any]) -> list[Any]:
        host_names(hosts)
        return hosts

    # Where the file was read from (not a TOML key).
    _source_path: Path | None = PrivateAttr(None)

    @property
    def source_path(self) -> Path | None:
        return self._source_path

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Earlier sources win: environment over the file's contents (passed as init kwargs).
        return (_EnvSource(settings_cls), init_settings)

    # ------------------------------------------------------------------ derived paths
    @property
    def base_dir(self) -> Path:
        return self.source_path.parent if self.source_path else Path.cwd()

    def state_dir(self) -> Path:
        """Folder for the store and the pool: default inside the target's git dir."""
        if self.state.dir is not None:
            return self.state.dir
        return _git_dir(self.target.path) / "mc"

    def pool_dir(self) -> Path:
        """Where the agents' worktrees live: never inside a ``.git`` directory by default.

        ``scheduler.parallel.pool_dir`` when set; else ``<state.dir>/pool`` when ``state.dir``
        is set outside any ``.git``; else :func:`default_pool_dir` (the user's cache dir).
        Claude Code refuses every edit under a ``.git/`` directory, so the old default
        (``<git dir>/mc/pool``, see :meth:`legacy_pool_dir`) made every worker fail.
        """
        if self.scheduler.parallel.pool_dir is not None:
            return self.scheduler.parallel.pool_dir
        if self.state.dir is not None and not inside_git_dir(self.state.dir):
            return self.state.dir / "pool"
        return default_pool_dir(self.target.path)

    def legacy_pool_dir(self) -> Path:
        """The pool location of earlier versions (``<state dir>/pool``), migrated at start-up."""
        return self.state_dir() / "pool"

    def db_path(self) -> Path:
        return self.state_dir() / "mission.db"


def inside_git_dir(path: Path) -> bool:
    """Whether ``path`` has a ``.git`` directory among its components (Claude Code refuses
    edits there: "Claude requested permissions to edit ... which is a sensitive file")."""
    return ".git" in Path(os.path.abspath(path)).parts


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME`` or ``~/.cache``; a per-user temp folder without a home."""
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    if xdg and os.path.isabs(xdg):
        return Path(xdg)
    home = os.path.expanduser("~")
    if home and home != "~" and os.path.isabs(home):
        return Path(home) / ".cache"
    import tempfile

    return Path(tempfile.gettempdir()) / f"mission-control-{os.getuid()}"


def default_pool_dir(repo_path: Path) -> Path:
    """``<user cache>/mission-control/pools/<repo name>-<hash of its git dir>``.

    Keyed by the repository's git dir, so two clones of one project (or a repo and its
    linked worktree's main repo) never share slots, and a moved repository starts a new
    pool (the old registrations are pruned by the start-up repair). Git worktrees work
    across filesystems, and the cache dir is writable even when the repo's parent is not.
    """
    import hashlib

    repo = Path(os.path.abspath(repo_path))
    git_dir = _common_git_dir(repo)
    digest = hashlib.sha256(str(git_dir).encode()).hexdigest()[:12]
    name = (git_dir.parent.name if git_dir.name == ".git" else git_dir.name.removesuffix(".git"))
    return user_cache_dir() / "mission-control" / "pools" / f"{name or 'repo'}-{digest}"


def _common_git_dir(repo: Path) -> Path:
    """The git dir shared by all worktrees of ``repo`` (follows ``commondir``)."""
    git_dir = _git_dir(repo)
    common = git_dir / "commondir"
    if common.is_file():
        git_dir = git_dir / common.read_text().strip()
    return Path(os.path.realpath(git_dir))


def _git_dir(repo_path: Path) -> Path:
    """The git dir of ``repo_path`` (``.git`` folder, or the path itself when bare)."""
    dot_git = repo_path / ".git"
    if dot_git.is_dir():
        return dot_git
    if dot_git.is_file():  # a linked worktree: "gitdir: <path>"
        text = dot_git.read_text().strip()
        if text.startswith("gitdir:"):
            return Path(text.split(":", 1)[1].strip())
    if (repo_path / "HEAD").is_file() and (repo_path / "objects").is_dir():
        return repo_path
    return dot_git


# --------------------------------------------------------------------------- loading
_PATH_KEYS: tuple[tuple[str, ...], ...] = (
    ("target", "path"),
    ("scheduler", "parallel", "pool_dir"),
    ("agent", "cassette"),
    ("state", "dir"),
    ("hitl", "approval_file"),
)


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    overrides: dict[str, Any] | None = None,
    require_file: bool = True,
) -> MissionConfig:
    """Read, merge with ``MC_*`` env vars and validate a config file.

    ``overrides`` (nested dict) win over both file and environment (CLI flags).
    Raises :class:`ConfigError` with a user-facing message.
    """
    file_path = Path(path) if path is not None else Path(DEFAULT_CONFIG_NAME)
    data: dict[str, Any] = {}
    if file_path.exists():
        data = _read_toml(file_path)
        file_path = file_path.resolve()
    elif require_file:
        raise ConfigError(
            f"{file_path}: config file not found (create one with `mc init --config {file_path}`)"
        )
    else:
        file_path = None  # type: ignore[assignment]

    _check_env_keys()
    try:
        config = MissionConfig(**data)
        if overrides:
            _apply_overrides(config, overrides)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, file_path)) from None
    except SettingsError as exc:  # an MC_* value for a list or table that is not JSON
        raise ConfigError(
            f"environment: {redact_userinfo(str(exc))}: an MC_* variable for a list or a table "
            "must hold JSON, e.g. MC_HITL__GATES='[\"push\"]' (docs/config.md)") from None
    config._source_path = file_path
    _check_plugins(config, file_path)
    _resolve_paths(config, config.base_dir)
    _check_pool_dir(config, file_path)
    return config


def _check_plugins(config: MissionConfig, path: Path | None) -> None:
    """``[plugins.<name>]`` sections name installed plugins and only their keys."""
    from engine.plugins import PluginError, configure, discover

    try:
        configure(config.plugins, discover())
    except PluginError as exc:
        where = f"{path}: " if path else ""
        raise ConfigError(f"{where}{exc}") from None


def _check_pool_dir(config: MissionConfig, path: Path | None) -> None:
    """A pool inside ``.git`` makes Claude Code refuse every edit: say so before a mission."""
    pool = config.scheduler.parallel.pool_dir
    if pool is None or not inside_git_dir(pool) or config.agent.backend != "claude":
        return
    if config.agent.permission_mode == "bypassPermissions":
        return  # the user opted out of every check, this one included
    where = f"{path}: " if path else ""
    raise ConfigError(
        f"{where}invalid configuration (1 problem)\n  scheduler.parallel.pool_dir: {pool} is "
        "inside a .git directory, where Claude Code refuses every edit (\"a sensitive file\"); "
        "choose a folder outside .git, or remove the key for the default "
        f"({default_pool_dir(config.target.path)})"
    )


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: config file is not valid UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def _check_env_keys() -> None:
    """``MC_`` variables that do not name a config key are errors (typos must not pass)."""
    problems = []
    for name in sorted(os.environ):
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX) :].split("__")]
        model: type[BaseModel] = MissionConfig
        for depth, part in enumerate(parts):
            fields = model.model_fields
            if part not in fields:
                where = ".".join(parts[:depth]) or "top level"
                hint = _did_you_mean(part, fields)
                problems.append(f"{name}: unknown key '{part}' in {where}{hint}")
                break
            annotation = fields[part].annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                model = annotation
            else:
                break
    if problems:
        raise ConfigError("invalid environment override:\n  " + "\n  ".join(problems))


def _resolve_paths(config: MissionConfig, base: Path) -> None:
    for key_path in _PATH_KEYS:
        owner: Any = config
        for part in key_path[:-1]:
            owner = getattr(owner, part)
        value = getattr(owner, key_path[-1])
        if value is None:
            continue
        resolved = Path(os.path.expanduser(str(value)))
        if not resolved.is_absolute():
            resolved = base / resolved
        object.__setattr__(owner, key_path[-1], resolved.resolve())


def _apply_overrides(model: BaseModel, overrides: dict[str, Any]) -> None:
    """Set nested values with validation (``validate_assignment``); CLI flags win over all."""
    for key, value in overrides.items():
        current = getattr(model, key)
        if isinstance(value, dict) and isinstance(current, BaseModel):
            _apply_overrides(current, value)
        else:
            setattr(model, key, value)


def _did_you_mean(word: str, choices: Any) -> str:
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class that owns the last element of ``loc``."""
    model: type[BaseModel] = MissionConfig
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        else:
            return None
    return model


_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/@\s'\"]+@")


def redact_userinfo(text: str) -> str:
    """``text`` with the ``user[:password]@`` part of every URL in it replaced by ``***@``: a
    token in a git remote or a cluster address (RFC 3986 userinfo) is never echoed back."""
    return _USERINFO.sub(r"\1***@", text)


def format_validation_error(exc: ValidationError, path: Path | None) -> str:
    """One line per problem: ``key.path: reason``."""
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        key = ".".join(str(p) for p in loc) or "(top level)"
        if err["type"] == "extra_forbidden":
            owner = _model_at(loc)
            choices = list(owner.model_fields) if owner else []
            lines.append(f"{key}: unknown key{_did_you_mean(str(loc[-1]), choices)}")
        else:
            msg = err["msg"]
            if "input" in err and err["type"] not in ("missing", SECRET_INPUT):
                msg = f"{msg} (got {err['input']!r})"
            lines.append(f"{key}: {redact_userinfo(msg)}")
    where = f"{path}: " if path else ""
    header = f"{where}invalid configuration ({len(lines)} problem{'s' if len(lines) != 1 else ''})"
    return header + "\n  " + "\n  ".join(lines)


UNAVAILABLE_FEATURES: tuple[tuple[str, str], ...] = ()


def secret_env_names(config: MissionConfig) -> list[str]:
    """The environment variables that hold the engine's own secrets (bot and server tokens):
    never passed to an agent, whatever ``[agent] env_passthrough`` says."""
    names = [config.hitl.telegram.token_env, config.notify.telegram_token_env,
             config.a2a.token_env, config.live.token_env]
    return list(dict.fromkeys(n for n in names if n))


def unavailable_notes(config: MissionConfig) -> list[str]:
    """Keys switched on for features this version does not have yet (said, never silently ignored)."""
    notes = []
    for key, feature in UNAVAILABLE_FEATURES:
        owner: Any = config
        for part in key.split("."):
            owner = getattr(owner, part)
        if owner:
            notes.append(f"{key} = true: {feature} is not available in this version and has no effect")
    telegram = config.hitl.telegram
    if telegram.enabled and not telegram.chat_id.strip():
        notes.append("hitl.telegram.chat_id is empty: Telegram approvals stay off until it "
                     "names the chat that may decide")
    elif telegram.enabled and not os.environ.get(telegram.token_env):
        notes.append(f"hitl.telegram: ${telegram.token_env} is not set: Telegram approvals "
                     "stay off until it holds the bot token")
    return notes


def summary(config: MissionConfig) -> dict[str, str]:
    """A short human summary for ``mc validate-config``."""
    return {
        "target": f"{config.target.name} ({config.target.path}, branch "
        f"{config.target.branch or '(default: origin/HEAD, else the current branch)'})",
        "objective": config.target.objective or "(none set)",
        "verification": config.target.verification.command,
        "precheck": _precheck_line(config.target.verification),
        "workers": str(config.scheduler.parallel.num_workers),
        "budget": (
            f"${config.scheduler.budget.max_per_run_usd:.2f} per run, "
            f"${config.scheduler.budget.max_per_session_usd:.2f} per session"
        ),
        "agent": config.agent.backend
        + (" (NO permission checks: bypassPermissions)"
           if config.agent.permission_mode == "bypassPermissions" else ""),
        "worktrees": str(config.pool_dir()),
        "speculation": _speculation_line(config.speculation),
        "merge queue": _merge_queue_line(config.merge_queue),
        "hosts": _hosts_line(config),
    }


def _speculation_line(spec: SpeculationConfig) -> str:
    if not spec.enabled or spec.branch_count == 1:
        return "off (one agent per unit)"
    which = "every unit" if spec.units == "all" else "each uncertain unit"
    return f"{spec.branch_count} branches for {which}, chosen by {spec.selection}"


def _precheck_line(verification: VerificationConfig) -> str:
    if not verification.precheck:
        return "off (the merge queue bisects to find a failing unit)"
    if verification.precheck_when_queue_idle:
        return "every unit, in its worktree, before the merge queue"
    return "each unit, in its worktree, unless the merge queue is idle"


def _merge_queue_line(queue: MergeQueueConfig) -> str:
    size = f"batches of {queue.batch_size}"
    if queue.speculative_depth == 0:
        return f"{size}, one batch at a time (speculative_depth 0)"
    ahead = queue.speculative_depth
    return (f"{size}, {ahead} speculative batch{'es' if ahead != 1 else ''} ahead, "
            f"{queue.verify_slots} verify slot{'s' if queue.verify_slots != 1 else ''}")


def _hosts_line(config: MissionConfig) -> str:
    if not config.hosts:
        return f"none (local processes, {config.scheduler.parallel.num_workers} slots)"
    parts = []
    for name, host in zip(host_names(config.hosts), config.hosts, strict=True):
        where = getattr(host, "address", "")
        where = f" {redact_userinfo(where)}" if where and where != "auto" else ""
        parts.append(f"{name} ({host.kind}{where}, {host.slots} slot{'s' if host.slots != 1 else ''})")
    return ", ".join(parts)
