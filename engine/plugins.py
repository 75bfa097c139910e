"""Plugins: observers of the event stream and hooks at the engine's decision points.

A plugin is a class registered under the entry-point group ``mission_control.plugins``
(see ``docs/plugins.md``)::

    [project.entry-points."mission_control.plugins"]
    audit = "my_package:AuditPlugin"

It has a ``name`` (its config section is ``[plugins.<name>]``), an optional ``Config``
(a pydantic model; unknown keys are errors, ``enabled`` is always accepted), and may:

- return **observers** (:class:`Observer`): each reads the mission's events in id order,
  without gaps, in its own task. An exception or a slow observer never stops the mission
  or another observer; the first error of each observer is recorded once as a
  ``plugin.error`` event. Observers act only through the store (``ctx.store``), e.g.
  ``store.decide_approval``.
- override **hooks** (:class:`Plugin` methods, no-op by default): planning notes, the
  order of ready units, the worker options (model, single pass), the dispatch limit, the
  end of each agent session, around each epoch phase, after an epoch's work, after an
  epoch, and the mission outcome. Hooks of third-party plugins are isolated like
  observers (an error is recorded and the default is used); built-in plugins are trusted.

(About 420 lines, kept in one module on purpose: the protocol, its discovery and the
guarantees of the manager are read together; ``docs/plugins.md`` documents them.)

The built-ins (publish, rewards, episodic memory, circuit breaker) are registered the
same way (``engine/builtins.py``) and can be switched off with
``[plugins.<name>] enabled = false``.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar, runtime_checkable

import anyio
from pydantic import BaseModel, ConfigDict, ValidationError

from engine.models import Event

if TYPE_CHECKING:
    from engine.config import MissionConfig
    from engine.models import MissionStatus
    from engine.runtime import Runtime
    from engine.store import Store

ENTRY_POINT_GROUP = "mission_control.plugins"
# The built-ins, as registered in pyproject.toml (used when the installed metadata is stale).
BUILTIN_PLUGINS = {
    "publish": "engine.builtins:PublishPlugin",
    "rewards": "engine.builtins:RewardsPlugin",
    "episodic_memory": "engine.builtins:EpisodicMemoryPlugin",
    "context_store": "engine.learning.memory:ContextStorePlugin",
    "reflections": "engine.learning.reflection:ReflectionPlugin",
    "circuit_breaker": "engine.builtins:CircuitBreakerPlugin",
    "approval_file": "engine.channels.file:ApprovalFilePlugin",
    "telegram": "engine.channels.telegram:TelegramPlugin",
    "notify": "engine.notify:NotifyPlugin",
    "tracing": "engine.services.tracing.plugin:TracingPlugin",
    "backlog": "engine.strategy.plugin:BacklogPlugin",
    "discovery": "engine.discovery.plugin:DiscoveryPlugin",
    "prompt_evolution": "engine.learning.plugins:PromptEvolutionPlugin",
    "attribution": "engine.learning.plugins:AttributionPlugin",
}
DRAIN_SECONDS = 10.0  # how long the end of a mission waits for observers to catch up
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


# --------------------------------------------------------------------------- discovery
def discover() -> dict[str, type[Plugin]]:
    """Plugin classes registered under :data:`ENTRY_POINT_GROUP`, plus the built-ins
    (always present, even when the installed metadata is stale), by name."""
    found: dict[str, type[Plugin]] = {}
    registered = list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
    names = {ep.name for ep in registered}
    registered += [importlib.metadata.EntryPoint(name, value, ENTRY_POINT_GROUP)
                   for name, value in BUILTIN_PLUGINS.items() if name not in names]
    for ep in registered:
        try:
            cls = ep.load()
        except Exception as exc:  # a broken third-party package names itself
            raise PluginError(f"plugins.{ep.name}: cannot load {ep.value}: {exc}") from None
        if not (isinstance(cls, type) and issubclass(cls, Plugin)):
            raise PluginError(f"plugins.{ep.name}: {ep.value} is not an engine.plugins.Plugin")
        name = cls.name or ep.name
        if name in found and found[name] is not cls:
            raise PluginError(f"plugins.{name}: registered twice ({ep.value})")
        found[name] = cls
    return found


def configure(
    raw: dict[str, Any], available: dict[str, type[Plugin]]
) -> dict[str, PluginConfig]:
    """Validate the ``[plugins.*]`` sections against the plugins found.

    Raises :class:`PluginError` with one ``plugins.<name>.<key>: reason`` line per problem.
    """
    problems: list[str] = []
    configs: dict[str, PluginConfig] = {}
    for name in raw:
        if name not in available:
            import difflib

            near = difflib.get_close_matches(name, list(available), n=1, cutoff=0.6)
            hint = f" (did you mean '{near[0]}'?)" if near else ""
            problems.append(f"plugins.{name}: unknown plugin{hint}; installed: "
                            f"{', '.join(sorted(available)) or 'none'}")
    for name, cls in available.items():
        section = raw.get(name) or {}
        if not isinstance(section, dict):
            problems.append(f"plugins.{name}: must be a table")
            continue
        try:
            configs[name] = cls.Config(**section)
        except ValidationError as exc:
            for err in exc.errors():
                key = ".".join(str(p) for p in err["loc"])
                msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
                problems.append(f"plugins.{name}.{key}: {msg}")
    if problems:
        raise PluginError("invalid plugin configuration\n  " + "\n  ".join(problems))
    return configs


# --------------------------------------------------------------------------- manager
class PluginManager:
    """The enabled plugins of one mission: calls hooks in order, runs observers."""

    def __init__(self, plugins: Iterable[Plugin]) -> None:
        self.plugins = sorted(plugins, key=lambda p: (p.order, p.name))
        self._store: Store | None = None
        self._mission_id: int | None = None
        self._failed: set[str] = set()

    @classmethod
    def load(cls, config: MissionConfig) -> PluginManager:
        """Discover, validate ``config.plugins`` and instantiate the enabled plugins."""
        available = discover()
        configs = configure(config.plugins, available)
        return cls(
            available[name](cfg, config) for name, cfg in configs.items() if cfg.enabled
        )

    def get(self, name: str) -> Plugin | None:
        return next((p for p in self.plugins if p.name == name), None)

    def bind(self, store: Store, mission_id: int) -> None:
        """Where plugin errors are recorded (set once the mission has a row)."""
        self._store, self._mission_id = store, mission_id

    def _error(self, plugin: Plugin, where: str, exc: BaseException) -> None:
        key = f"{plugin.name}:{where}"
        if key in self._failed:
            return
        self._failed.add(key)
        if self._store is not None:
            self._store.append_event(
                "plugin.error", mission_id=self._mission_id, plugin=plugin.name, where=where,
                error=f"{type(exc).__name__}: {exc}",
                traceback="".join(traceback.format_exception(exc))[-4000:],
            )

    def _call(self, plugin: Plugin, hook: str, default: T, *args: Any) -> T:
        fn = getattr(plugin, hook)
        if plugin.builtin:
            return fn(*args)
        try:
            return fn(*args)
        except Exception as exc:
            self._error(plugin, hook, exc)
            return default

    async def _acall(self, plugin: Plugin, hook: str, default: T, *args: Any) -> T:
        fn = getattr(plugin, hook)
        if plugin.builtin:
            return await fn(*args)
        try:
            return await fn(*args)
        except Exception as exc:
            self._error(plugin, hook, exc)
            return default

    # ------------------------------------------------------------------ hooks
    def planning_notes(self, rt: Runtime) -> list[str]:
        return [line for p in self.plugins for line in self._call(p, "planning_notes", [], rt)]

    def worker_notes(self, rt: Runtime, unit: dict[str, Any]) -> list[str]:
        return [line for p in self.plugins
                for line in self._call(p, "worker_notes", [], rt, dict(unit))]

    def order_ready(self, units: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for p in self.plugins:
            ordered = self._call(p, "order_ready", units, list(units))
            # a hook orders; it cannot invent or drop units
            if sorted(u["id"] for u in ordered) == sorted(u["id"] for u in units):
                units = ordered
        return units

    def worker_options(self, unit: dict[str, Any]) -> WorkerOptions:
        options = WorkerOptions()
        for p in self.plugins:
            options = self._call(p, "worker_options", options, unit, replace(options))
        return options

    def dispatch_limit(self, workers: int) -> int:
        limit = workers
        for p in self.plugins:
            # a third-party plugin cannot starve the mission; a built-in may pause it
            # (the circuit breaker's `pause` strategy)
            floor = 0 if p.builtin else 1
            limit = min(limit, max(floor, int(self._call(p, "dispatch_limit", limit, limit))))
        return limit

    def session_ended(self, rt: Runtime, ok: bool) -> None:
        for p in self.plugins:
            self._call(p, "session_ended", None, rt, ok)

    async def around_phase(
        self, phase: str, view: EpochView, body: Callable[[], Awaitable[T]]
    ) -> T:
        """Run ``body`` inside every plugin's ``around_phase`` (first plugin outermost)."""

        def wrap(plugin: Plugin, inner: Callable[[], Awaitable[T]]) -> Callable[[], Awaitable[T]]:
            async def call() -> T:
                if plugin.builtin:
                    return await plugin.around_phase(phase, view, inner)
                ran = False
                result: Any = None

                async def once() -> T:
                    nonlocal ran, result
                    if not ran:
                        ran = True
                        result = await inner()
                    return result

                try:
                    out = await plugin.around_phase(phase, view, once)
                except Exception as exc:
                    self._error(plugin, f"around_phase:{phase}", exc)
                    out = await once()  # the phase itself still runs (once)
                if not ran:
                    self._error(plugin, f"around_phase:{phase}",
                                RuntimeError("around_phase did not call proceed()"))
                    out = await once()
                return result if ran else out

            return call

        chain = body
        for plugin in reversed(self.plugins):
            if type(plugin).around_phase is not Plugin.around_phase:
                chain = wrap(plugin, chain)
        return await chain()

    async def epoch_executed(self, view: EpochView) -> None:
        for p in self.plugins:
            await self._acall(p, "epoch_executed", None, view)

    async def after_epoch(self, view: EpochView) -> None:
        for p in self.plugins:
            await self._acall(p, "after_epoch", None, view)

    async def mission_outcome(
        self, rt: Runtime, status: MissionStatus, reason: str
    ) -> tuple[MissionStatus, str]:
        for p in self.plugins:
            status, reason = await self._acall(
                p, "mission_outcome", (status, reason), rt, status, reason
            )
        return status, reason

    # ------------------------------------------------------------------ observers
    def observers(self) -> list[tuple[Plugin, Observer]]:
        return [(p, o) for p in self.plugins for o in self._call(p, "observers", ())]

    def observing(self, store: Store, mission_id: int) -> AbstractAsyncContextManager[Any]:
        """An async context manager running every observer for the life of the block."""
        self.bind(store, mission_id)
        return ObserverRunner(self, store, mission_id).run()


class ObserverRunner:
    """Runs each observer in its own task over its own cursor of the events table.

    Delivery: every event of the mission with id > the observer's start (``start_after``
    if the observer defines it, else 0: from the mission's first event, so a resumed
    mission replays; the event id is the idempotency key), in id order, without gaps,
    at least once. At the end of the block each observer gets up to
    :data:`DRAIN_SECONDS` to reach the last event, then it is cancelled.
    """

    def __init__(self, manager: PluginManager, store: Store, mission_id: int) -> None:
        self.manager = manager
        self.store = store
        self.mission_id = mission_id
        self.delivered: dict[int, int] = {}  # observer index -> last event id handled
        self._target: int | None = None
        self._pairs = manager.observers()

    @asynccontextmanager
    async def run(self) -> AsyncIterator[ObserverRunner]:
        """Observe for the life of the block, then drain (shielded) and stop."""
        if not self._pairs:
            yield self
            return
        async with anyio.create_task_group() as tg:
            for index, (plugin, observer) in enumerate(self._pairs):
                tg.start_soon(self._pump, index, plugin, observer)
                if callable(getattr(observer, "run", None)):
                    tg.start_soon(self._background, plugin, observer)
            try:
                yield self
            finally:
                with anyio.CancelScope(shield=True):
                    self._target = self.store.last_event_id()
                    with anyio.move_on_after(DRAIN_SECONDS):
                        while any(self.delivered.get(i, 0) < self._caught_up_to(i)
                                  for i in range(len(self._pairs))):
                            await anyio.sleep(0.02)
                tg.cancel_scope.cancel()

    def _caught_up_to(self, index: int) -> int:
        """The last event of this mission up to the drain target (0 if none)."""
        rows = self.store.query(
            "SELECT MAX(id) AS id FROM events WHERE mission_id = ? AND id <= ?",
            (self.mission_id, self._target or 0),
        )
        return int(rows[0]["id"] or 0)

    async def _background(self, plugin: Plugin, observer: Observer) -> None:
        """An observer's optional ``async run(ctx)``: its own background task for the life
        of the mission (polling a file, a chat API). An exception is recorded as
        ``plugin.error`` and ends only that task; it is cancelled after the drain."""
        try:
            await observer.run(ObserverContext(self.store, self.mission_id))  # type: ignore[attr-defined]
        except Exception as exc:
            self.manager._error(plugin, f"run:{type(observer).__name__}", exc)

    async def _pump(self, index: int, plugin: Plugin, observer: Observer) -> None:
        ctx = ObserverContext(self.store, self.mission_id)
        start = getattr(observer, "start_after", None)
        try:
            after = int(start(ctx)) if start is not None else 0
        except Exception as exc:
            self.manager._error(plugin, "start_after", exc)
            after = 0
        self.delivered[index] = after
        is_async = inspect.iscoroutinefunction(observer.on_event)
        async for event in self.store.subscribe(after_id=after, mission_id=self.mission_id):
            try:
                if is_async:
                    await observer.on_event(event, ctx)
                else:
                    await anyio.to_thread.run_sync(observer.on_event, event, ctx)
            except Exception as exc:
                self.manager._error(plugin, f"observer:{type(observer).__name__}", exc)
            self.delivered[index] = event.id
