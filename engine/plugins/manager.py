"""The enabled plugins of one mission (:class:`PluginManager`): hooks called in order, a
third-party plugin's error recorded once as ``plugin.error`` and the default used.
"""

from __future__ import annotations

import traceback
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from engine.plugins.base import EpochView, Observer, Plugin, WorkerOptions
from engine.plugins.loading import configure, discover
from engine.plugins.observers import ObserverRunner

if TYPE_CHECKING:
    from engine.config import MissionConfig
    from engine.models import MissionStatus
    from engine.runtime import Runtime
    from engine.store import Store

T = TypeVar("T")


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
