"""The MCP server (official ``mcp`` SDK, ``MCPServer``): tools and resources over every
registered project. Errors the caller can fix come back as MCP tool errors
(``is_error=True``) or resource errors, never as a crash of the server.

Tools: ``list_projects``, ``status``, ``list_missions``, ``list_units``, ``unit_detail``,
``list_approvals``, ``start_mission``, ``pause``, ``resume``, ``stop``, ``approve``, ``deny``,
``list_backlog``, ``add_backlog_item``.
Resources (templates): ``mc://{project}/missions/{mission_id}/report`` (JSON, the report of
``engine/report.py``) and ``mc://{project}/missions/{mission_id}/events{?limit}`` (the last
``limit`` events, JSON). ``mission_id`` may be ``latest``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from mcp.types import ToolAnnotations

from engine import __version__
from engine.models import CommandKind
from engine.services.mcp import operations as ops
from engine.services.mcp.operations import OperationError, ProjectStores

T = TypeVar("T")

INSTRUCTIONS = (
    "Mission Control runs fleets of AI coding agents against git repositories. Every tool takes "
    "an optional `project` (a name from list_projects); without it the server's default project "
    "is used. Missions are identified by integer ids, units by string ids, approvals by integer "
    "ids. start_mission launches a mission in the background; follow it with status."
)

READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)
ACTION = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)


async def _call(fn: Callable[..., T], *args: Any) -> T:
    """Run a blocking store / git operation in a worker thread; caller errors become tool errors."""
    try:
        return await anyio.to_thread.run_sync(fn, *args)
    except OperationError as exc:
        raise ToolError(str(exc)) from None


def build_server(stores: ProjectStores) -> MCPServer:
    """An ``MCPServer`` serving the projects of ``stores`` (run it over stdio or HTTP)."""
    server = MCPServer("mission-control", version=__version__, instructions=INSTRUCTIONS,
                       log_level="WARNING")

    @server.tool(annotations=READ_ONLY)
    async def list_projects() -> dict[str, Any]:
        """The registered projects: name, config and store paths, last mission and its status."""
        return {"projects": await _call(ops.list_projects, stores)}

    @server.tool(annotations=READ_ONLY)
    async def status(project: str | None = None) -> dict[str, Any]:
        """The project's running missions (else its last one): status, spend in USD, current
        epoch, leaf units by status, pending approvals."""
        return await _call(ops.status, stores, project)

    @server.tool(annotations=READ_ONLY)
    async def list_missions(project: str | None = None, limit: int = 20) -> dict[str, Any]:
        """Missions of the project, newest first (id, objective, status, outcome, times, cost)."""
        return await _call(ops.list_missions, stores, project, limit)

    @server.tool(annotations=READ_ONLY)
    async def list_units(mission_id: int | None = None, project: str | None = None) -> dict[str, Any]:
        """Work units of a mission (default: the newest): id, title, status, reason, branch..."""
        return await _call(ops.list_units, stores, project, mission_id)

    @server.tool(annotations=READ_ONLY)
    async def unit_detail(unit_id: str, project: str | None = None,
                          max_diff_bytes: int = ops.DEFAULT_DIFF_BYTES) -> dict[str, Any]:
        """One unit with its attempts, review and the unified diff of its branch against its
        base commit (cut at max_diff_bytes, at most 400000, with a marker)."""
        return await _call(ops.unit_detail, stores, project, unit_id, max_diff_bytes)

    @server.tool(annotations=READ_ONLY)
    async def list_approvals(mission_id: int | None = None, project: str | None = None,
                             pending_only: bool = True) -> dict[str, Any]:
        """Human-in-the-loop approvals of a mission (default: pending ones of the newest)."""
        return await _call(ops.list_approvals, stores, project, mission_id, pending_only)

    @server.tool(annotations=ACTION)
    async def start_mission(objective: str, project: str | None = None) -> dict[str, Any]:
        """Start a mission with this objective on the project, in the background (a detached
        `mc mission --no-ui`); returns its mission id once it exists."""
        return await _call(ops.start_mission, stores, project, objective)

    @server.tool(annotations=ACTION)
    async def pause(mission_id: int | None = None, project: str | None = None) -> dict[str, Any]:
        """Ask the running mission (default: the newest) to pause: nothing new is dispatched."""
        return await _call(ops.send_command, stores, project, CommandKind.PAUSE, mission_id)

    @server.tool(annotations=ACTION)
    async def resume(mission_id: int | None = None, project: str | None = None) -> dict[str, Any]:
        """Ask a paused mission (default: the newest) to resume."""
        return await _call(ops.send_command, stores, project, CommandKind.RESUME, mission_id)

    @server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True,
                                             open_world_hint=False))
    async def stop(mission_id: int | None = None, project: str | None = None) -> dict[str, Any]:
        """Stop the mission gracefully: running agents finish, nothing new starts."""
        return await _call(ops.send_command, stores, project, CommandKind.STOP, mission_id)

    @server.tool(annotations=ACTION)
    async def approve(approval_id: int, project: str | None = None) -> dict[str, Any]:
        """Approve a pending approval. The first decision wins; a decided one is an error
        saying who decided."""
        return await _call(ops.decide, stores, project, approval_id, True)

    @server.tool(annotations=ACTION)
    async def deny(approval_id: int, project: str | None = None) -> dict[str, Any]:
        """Deny a pending approval. The first decision wins; a decided one is an error
        saying who decided."""
        return await _call(ops.decide, stores, project, approval_id, False)

    @server.tool(annotations=READ_ONLY)
    async def list_backlog(project: str | None = None, include_closed: bool = False,
                           limit: int = 50) -> dict[str, Any]:
        """The persistent backlog, highest priority first: id, title, track, state, impact and
        effort (1-5), effective score, age in days, source, evidence."""
        return await _call(ops.list_backlog, stores, project, include_closed, limit)

    @server.tool(annotations=ACTION)
    async def add_backlog_item(title: str, track: str = "feature", impact: int = 3,
                               effort: int = 3, evidence: str = "",
                               project: str | None = None) -> dict[str, Any]:
        """Add a backlog item (track: feature, quality, security or tests; impact and effort
        1-5). The same track and title merges into the existing item; returns its id."""
        return await _call(ops.add_backlog_item, stores, project, title, track, impact, effort,
                           evidence)

    @server.resource("mc://{project}/missions/{mission_id}/report", mime_type="application/json",
                     name="mission-report", description="The mission's JSON report.")
    async def mission_report(project: str, mission_id: str) -> str:
        data = await _read(ops.report, stores, project, _mission_arg(mission_id))
        return json.dumps(data, default=str)

    @server.resource("mc://{project}/missions/{mission_id}/events{?limit}",
                     mime_type="application/json", name="mission-events",
                     description="The last `limit` events of the mission (default 100), oldest first.")
    async def mission_events(project: str, mission_id: str, limit: int = ops.DEFAULT_EVENT_TAIL) -> str:
        data = await _read(ops.event_tail, stores, project, _mission_arg(mission_id), limit)
        return json.dumps(data, default=str)

    return server


def _mission_arg(value: str) -> int | None:
    if value in ("latest", ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise ResourceError(f"mission id must be an integer or 'latest', not {value!r}") from None


async def _read(fn: Callable[..., T], *args: Any) -> T:
    try:
        return await anyio.to_thread.run_sync(fn, *args)
    except OperationError as exc:
        raise ResourceError(str(exc)) from None
