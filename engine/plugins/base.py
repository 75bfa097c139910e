"""The plugin protocol: the :class:`Plugin` base class with its no-op hooks, its config
base, the :class:`Observer` protocol and what hooks and observers are handed.

The guarantees around them (isolation, delivery) are in ``docs/plugins.md`` and
:mod:`engine.plugins`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ConfigDict

from engine.models import Event

if TYPE_CHECKING:
    from engine.config import MissionConfig
    from engine.models import MissionStatus
    from engine.runtime import Runtime
    from engine.store import Store

T = TypeVar("T")


class PluginError(RuntimeError):
    """A plugin cannot be loaded or configured (names the ``plugins.<name>`` key path)."""


class PluginConfig(BaseModel):
    """Base of every plugin's config section. Subclass it to add keys."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True


@dataclass(frozen=True)
class ObserverContext:
    """What an observer may use: the store (its only way to act) and the mission id."""

    store: Store
    mission_id: int


@runtime_checkable
class Observer(Protocol):
    """Reads the event stream. ``on_event`` may be ``async`` or plain (run in a thread).

    Optional: ``start_after(ctx) -> int`` (the last event id already handled) and
    ``async run(ctx)``, a background task of its own that runs beside the event delivery
    for the life of the mission (isolated like ``on_event``; cancelled at the end).
    """

    def on_event(self, event: Event, ctx: ObserverContext) -> Any: ...


@dataclass(frozen=True)
class WorkerOptions:
    """How the next agent session of a unit runs: model (None: the configured one), single
    pass (no architect pass), and prompt ``templates`` replacing shipped ones for this
    session (template name -> ``string.Template`` text with the same placeholders; how prompt
    evolution tries variants), labelled ``prompt_variant``; ``speculate`` False: the unit is
    worked by one agent even when ``[speculation]`` would branch it (degraded mode)."""

    model: str | None = None
    single_pass: bool = False
    speculate: bool = True
    templates: Mapping[str, str] = field(default_factory=dict)
    prompt_variant: str | None = None


@dataclass
class EpochView:
    """An epoch as hooks see it: ``result`` is the epoch's outcome once it has one."""

    rt: Runtime
    epoch_id: int
    number: int
    result: Any = None  # engine.pipeline.EpochResult
    notes: dict[str, Any] = field(default_factory=dict)  # scratch space shared by hooks


class Plugin:
    """Base class: every hook is a no-op. Override what you need."""

    name: ClassVar[str] = ""
    Config: ClassVar[type[PluginConfig]] = PluginConfig
    builtin: ClassVar[bool] = False  # built-ins are trusted: their errors are the engine's
    order: ClassVar[int] = 100  # hooks run in ascending order (built-ins first)

    def __init__(self, config: PluginConfig, mission: MissionConfig) -> None:
        self.config = config
        self.mission = mission

    def observers(self) -> Sequence[Observer]:
        return ()

    # ------------------------------------------------------------------ hooks
    def planning_notes(self, rt: Runtime) -> list[str]:
        """Lines for the planner's "lessons" section (episodic memory is one)."""
        return []

    def worker_notes(self, rt: Runtime, unit: dict[str, Any]) -> list[str]:
        """Lines for the "What earlier attempts learned" section of ``unit``'s worker prompt
        (episodic memory and the context store are two). Runs in a worker thread."""
        return []

    def order_ready(self, units: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The ready leaf units in dispatch order (default: priority, then age)."""
        return units

    def worker_options(self, unit: dict[str, Any], options: WorkerOptions) -> WorkerOptions:
        return options

    def dispatch_limit(self, workers: int) -> int:
        """How many agents may run at once (at most ``workers``)."""
        return workers

    def session_ended(self, rt: Runtime, ok: bool) -> None:
        """One agent session ended (``ok``: the agent itself did not fail)."""

    async def around_phase(
        self, phase: str, view: EpochView, proceed: Callable[[], Awaitable[T]]
    ) -> T:
        """Wrap one epoch phase (``plan``, ``execute``, ``publish``, ``feedback``,
        ``objective``); must call ``proceed()`` once and return its result."""
        return await proceed()

    async def epoch_executed(self, view: EpochView) -> None:
        """The epoch's units are all final (``view.result`` counts them); before feedback."""

    async def after_epoch(self, view: EpochView) -> None:
        """The epoch is recorded (status, feedback); before the objective decision."""

    async def mission_outcome(
        self, rt: Runtime, status: MissionStatus, reason: str
    ) -> tuple[MissionStatus, str]:
        """The mission is about to end with ``status``; return it, or another one."""
        return status, reason
