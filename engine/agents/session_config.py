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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.agents.permissions import mcp_rule

SERVER_NAME = "mc"
PERMISSION_RULE = mcp_rule(SERVER_NAME)


@dataclass(frozen=True)
class RecallSettings:
    """``[episodic_memory]`` as the ``recall`` tool uses it (the planner's ranking):
    minimum score, age half-life in days, and the answer's token budget."""

    threshold: float
    half_life_days: float
    tokens: int


def write_mcp_config(directory: Path, workdir: Path, verify_command: str, *, timeout: float,
                     store_path: Path | None, mission_id: int | None, unit_id: str | None,
                     recall: RecallSettings | None = None,
                     tools: Sequence[dict[str, Any]] = ()) -> Path:
    """Write a Claude Code ``--mcp-config`` file for one session into ``directory`` (never the
    worktree: the worker would commit it). ``recall``: serve the ``recall`` tool with these
    settings (needs ``store_path``); ``tools``: the unit's resolved template tools
    (``[{"name", "scope"}]``, :func:`engine.agents.tool_templates.resolve_requests`).
    Returns the file's path."""
    args = ["-m", "engine.services.session_tools", "--workdir", str(workdir),
            "--verify", verify_command, "--timeout", str(timeout)]
    if store_path is not None:
        args += ["--store", str(store_path)]
    if mission_id is not None:
        args += ["--mission", str(mission_id)]
    if unit_id:
        args += ["--unit", unit_id]
    if recall is not None and store_path is not None:
        args += ["--recall", json.dumps({"threshold": recall.threshold,
                                         "half_life_days": recall.half_life_days,
                                         "tokens": recall.tokens})]
    if tools:
        args += ["--tools", json.dumps([{"name": t["name"], "scope": list(t["scope"])}
                                        for t in tools])]
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"session-{unit_id or 'x'}-{uuid.uuid4().hex[:8]}.json"
    path.write_text(json.dumps({"mcpServers": {SERVER_NAME: {
        "type": "stdio", "command": sys.executable, "args": args,
        "env": {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}}}}, indent=2))
    return path
