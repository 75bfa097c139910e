"""The projects the MCP server serves: the registry and one open store per project
(:class:`ProjectStores`), and :class:`OperationError`, the error every operation raises.
"""

from __future__ import annotations

import threading
from pathlib import Path

from engine.registry import Project, Registry, RegistryError
from engine.store import Store, StoreError


class OperationError(Exception):
    """A request that cannot be served, phrased for the MCP client."""


class ProjectStores:
    """The registry and one open store per project (opened on first use, thread-safe).

    ``default``: the project a call without ``project`` means (``mc mcp --config``; served
    even when it is not registered); without it, the only registered project (see
    :meth:`Registry.resolve`).
    """

    def __init__(self, registry: Registry, default: Project | None = None,
                 private_env: tuple[str, ...] = ()) -> None:
        self.registry = registry
        self.default = default
        self.private_env = private_env  # the server's token variables: kept from missions
        self._stores: dict[Path, Store] = {}
        self._lock = threading.Lock()

    def project(self, name: str | None) -> Project:
        """The project ``name`` means; :class:`OperationError` listing the known ones."""
        if self.default is not None and name in (None, "", self.default.name):
            return self.default
        try:
            return self.registry.resolve(name or None)
        except RegistryError as exc:
            raise OperationError(str(exc)) from None

    def store(self, project: Project) -> Store:
        """The project's store; :class:`OperationError` when it has none yet."""
        path = project.store_path
        with self._lock:
            store = self._stores.get(path)
            if store is not None:
                return store
            if not path.exists():
                raise OperationError(
                    f"project {project.name!r} has no missions yet (no store at {path})")
            try:
                store = Store(path)
            except StoreError as exc:
                raise OperationError(str(exc)) from None
            self._stores[path] = store
            return store

    def close(self) -> None:
        with self._lock:
            for store in self._stores.values():
                store.close()
            self._stores.clear()
