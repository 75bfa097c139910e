"""``mc mcp``: a Model Context Protocol server over every registered project (see
docs/services.md#mcp). ``operations`` holds the SDK-free logic, ``server`` the MCP wiring,
``http`` the streamable-HTTP transport with its bind and token rules."""

from engine.services.mcp.operations import OperationError, ProjectStores

__all__ = ["OperationError", "ProjectStores"]
