"""The MCP server's backlog operations: list a project's backlog, add an item to it
(``docs/learning.md``).
"""

from __future__ import annotations

from typing import Any

from engine.config import ConfigError
from engine.registry import Project
from engine.services.mcp.stores import OperationError, ProjectStores


def _backlog(stores: ProjectStores, project_name: str | None) -> tuple[Project, Any]:
    from engine.strategy.backlog import Backlog

    project = stores.project(project_name)
    try:
        weights = project.load_config().discovery.track_weights
    except (ConfigError, OSError):
        weights = None  # the formula's default weights
    return project, Backlog(stores.store(project), weights)


def list_backlog(stores: ProjectStores, project_name: str | None,
                 include_closed: bool = False, limit: int = 50) -> dict[str, Any]:
    """The project's backlog, highest priority first (``docs/learning.md``)."""
    from engine.strategy.backlog import ACTIVE

    project, backlog = _backlog(stores, project_name)
    rows = backlog.items(None if include_closed else ACTIVE)[:max(1, min(limit, 500))]
    keep = ("id", "title", "track", "state", "impact", "effort", "effective_score",
            "score_override", "age_days", "source", "evidence", "mission_id")
    return {"project": project.name, "items": [{k: r[k] for k in keep} for r in rows]}


def add_backlog_item(stores: ProjectStores, project_name: str | None, title: str,
                     track: str, impact: int, effort: int, evidence: str) -> dict[str, Any]:
    """Add an item (or merge it into the same one: same track and title words)."""
    from engine.strategy.backlog import BacklogError, BacklogItem

    project, backlog = _backlog(stores, project_name)
    try:
        item_id, created = backlog.add(BacklogItem(title=title, track=track, impact=impact,
                                                   effort=effort, evidence=evidence, source="mcp"))
    except BacklogError as exc:
        raise OperationError(str(exc)) from None
    row = backlog.get(item_id)
    return {"project": project.name, "id": item_id, "created": created, "score": row["score"]}
