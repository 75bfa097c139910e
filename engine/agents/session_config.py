"""The ``--mcp-config`` file that gives one Claude Code session its own tools.

The server itself is ``engine/services/session_tools.py``; this module only writes the file
that tells the CLI how to start it (``python -m engine.services.session_tools ...``), so the
agents layer never imports the services layer (import-linter: no cycles).
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from pathlib import Path

SERVER_NAME = "mc"
PERMISSION_RULE = f"mcp__{SERVER_NAME}"


def write_mcp_config(directory: Path, workdir: Path, verify_command: str, *, timeout: float,
                     store_path: Path | None, mission_id: int | None, unit_id: str | None) -> Path:
    """Write a Claude Code ``--mcp-config`` file for one session into ``directory`` (never the
    worktree: the worker would commit it). Returns its path."""
    args = ["-m", "engine.services.session_tools", "--workdir", str(workdir),
            "--verify", verify_command, "--timeout", str(timeout)]
    if store_path is not None:
        args += ["--store", str(store_path)]
    if mission_id is not None:
        args += ["--mission", str(mission_id)]
    if unit_id:
        args += ["--unit", unit_id]
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"session-{unit_id or 'x'}-{uuid.uuid4().hex[:8]}.json"
    path.write_text(json.dumps({"mcpServers": {SERVER_NAME: {
        "type": "stdio", "command": sys.executable, "args": args,
        "env": {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}}}}, indent=2))
    return path
