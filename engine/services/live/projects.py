"""The projects the dashboard serves: every registered one, plus the project of ``--config``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine.config import ConfigError, load_config
from engine.registry import Registry, RegistryError, default_name


@dataclass(frozen=True)
class LiveProject:
    name: str
    store_path: Path


class ProjectSource:
    """Reads the registry on every call (a project registered meanwhile shows up)."""

    def __init__(self, config_path: Path | None = None, registry: Registry | None = None) -> None:
        self.registry = registry if registry is not None else Registry()
        self.extra: LiveProject | None = None
        if config_path is not None and config_path.exists():
            config = load_config(config_path)  # ConfigError names the key path
            self.extra = LiveProject(default_name(config), config.db_path().resolve())

    def projects(self) -> list[LiveProject]:
        found: dict[str, LiveProject] = {}
        try:
            for project in self.registry.projects(live=False):
                found[project.name] = LiveProject(project.name, project.store_path)
        except RegistryError:
            pass  # an unreadable registry: still serve --config's project
        if self.extra is not None:
            stores = {p.store_path.resolve() for p in found.values()}
            if self.extra.store_path not in stores and self.extra.name not in found:
                found[self.extra.name] = self.extra
        return [found[n] for n in sorted(found)]

    def get(self, name: str) -> LiveProject | None:
        return next((p for p in self.projects() if p.name == name), None)


__all__ = ["ConfigError", "LiveProject", "ProjectSource"]
