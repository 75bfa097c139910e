"""Tool synthesis: an MCP server (stdio) scoped to one worker session.

``python -m engine.services.session_tools --workdir W --verify CMD [--store DB --mission ID
--unit ID]`` serves, over stdio (official ``mcp`` SDK):

- ``run_verification``: the project's verification command in the worker's own worktree
  (``W``, never elsewhere), with a timeout; returns the exit code and the output's tail
  (``MAX_OUTPUT`` characters);
- ``report_discovery``: a follow-up task the worker noticed (title, track, evidence, impact,
  effort) goes into the persistent backlog (source ``worker``, de-duplicated;
  ``docs/learning.md``). Without ``--store`` it says so.

Claude Code gets it through ``--mcp-config`` (a JSON file outside the worktree written by
:func:`write_mcp_config`) with ``--strict-mcp-config``; its tools are allowed with the
permission rule ``mcp__mc`` (the whole server). ``[agent] session_tools = true`` turns it on.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

from engine.agents.session_config import (  # noqa: F401  (kept importable from here)
    PERMISSION_RULE,
    SERVER_NAME,
    write_mcp_config,
)

MAX_OUTPUT = 4000


def run_verification(workdir: Path, command: str, timeout: float) -> dict[str, Any]:
    """Run ``command`` (a shell command) in ``workdir``; its own process group is killed on
    timeout. Returns ``exit_code`` (None on timeout), ``passed`` and the output's tail."""
    if not command.strip():
        return {"exit_code": None, "passed": False, "output": "no verification command configured"}
    proc = subprocess.Popen(command, shell=True, cwd=workdir, stdout=subprocess.PIPE,  # noqa: S602
                            stderr=subprocess.STDOUT, text=True, errors="replace",
                            start_new_session=True, stdin=subprocess.DEVNULL)
    try:
        out, _ = proc.communicate(timeout=timeout)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        code = None
        out = (out or "") + f"\n[timed out after {timeout:g}s]"
    out = out or ""
    tail = out[-MAX_OUTPUT:]
    if len(out) > MAX_OUTPUT:
        tail = f"[... {len(out) - MAX_OUTPUT} earlier characters cut]\n" + tail
    return {"exit_code": code, "passed": code == 0, "output": tail}


def build_server(workdir: Path, verify_command: str, *, timeout: float = 600.0,
                 store_path: Path | None = None, mission_id: int | None = None,
                 unit_id: str | None = None) -> Any:
    """The session's ``MCPServer`` (run it with ``.run()`` over stdio)."""
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError

    server = MCPServer(SERVER_NAME, instructions=(
        "Mission Control tools for this work unit: run_verification runs the project's "
        "verification in your worktree; report_discovery records follow-up work you noticed "
        "but is out of this unit's scope."), log_level="WARNING")

    @server.tool(name="run_verification")
    def verification_tool() -> dict[str, Any]:
        """Run the project's verification command in this worktree; returns exit_code,
        passed and the tail of the output."""
        return run_verification(workdir, verify_command, timeout)

    @server.tool()
    def report_discovery(title: str, evidence: str, track: str = "feature", impact: int = 3,
                         effort: int = 3) -> dict[str, Any]:
        """Record follow-up work outside this unit's scope in the backlog. track: feature,
        quality, security or tests; impact and effort 1-5; evidence: file:line or output."""
        if store_path is None:
            raise ToolError("no store for this session: the discovery was not recorded")
        from engine.store import Store
        from engine.strategy.backlog import Backlog, BacklogError, BacklogItem

        with Store(store_path) as store:
            try:
                item_id, created = Backlog(store).add(BacklogItem(
                    title=title, track=track, impact=impact, effort=effort,
                    evidence=f"{evidence}\n(reported by unit {unit_id})" if unit_id else evidence,
                    source="worker"))
            except BacklogError as exc:
                raise ToolError(str(exc)) from None
            store.append_event("log", mission_id=mission_id, unit_id=unit_id, level="info",
                               message=f"unit {unit_id}: reported backlog item #{item_id}: {title}")
        return {"id": item_id, "created": created}

    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m engine.services.session_tools")
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--verify", default="")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--store", type=Path)
    parser.add_argument("--mission", type=int)
    parser.add_argument("--unit")
    ns = parser.parse_args(argv)
    build_server(ns.workdir.resolve(), ns.verify, timeout=ns.timeout, store_path=ns.store,
                 mission_id=ns.mission, unit_id=ns.unit).run()


if __name__ == "__main__":
    main()
