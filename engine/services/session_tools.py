"""Tool synthesis: an MCP server (stdio) scoped to one worker session.

``python -m engine.services.session_tools --workdir W --verify CMD [--store DB --mission ID
--unit ID --recall JSON --tools JSON]`` serves, over stdio (official ``mcp`` SDK):

- ``run_verification``: the project's verification command in the worker's own worktree
  (``W``, never elsewhere), with a timeout; returns the exit code and the output's tail
  (``MAX_OUTPUT`` characters);
- ``recall`` (with ``--store`` and ``--recall``): episodic memory searched for a query with
  the planner's ranking, threshold and token budget (``engine/learning/episodes.py``), from
  the project's store opened read-only;
- ``report_discovery``: a follow-up task the worker noticed (title, track, evidence, impact,
  effort) goes into the persistent backlog (source ``worker``, de-duplicated;
  ``docs/learning.md``). Without ``--store`` it says so;
- the unit's template tools (``--tools``: ``[{"name", "scope"}]``, names from
  :data:`engine.agents.tool_templates.TEMPLATES`), each confined to its scope of
  repository-relative paths inside ``W``.

Claude Code gets it through ``--mcp-config`` (a JSON file outside the worktree written by
:func:`write_mcp_config`) with ``--strict-mcp-config``; its tools are allowed with the
permission rule ``mcp__mc`` (the whole server). ``[agent] session_tools`` switches it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sqlite3
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine.agents.session_config import (  # noqa: F401  (kept importable from here)
    PERMISSION_RULE,
    SERVER_NAME,
    RecallSettings,
    write_mcp_config,
)
from engine.agents.tool_templates import (
    MAX_MATCHES,
    TEMPLATES,
    ToolRequestError,
    check_keyword,
    in_scope,
    is_unittest,
    python_test_runner,
    scope_path,
)

MAX_OUTPUT = 4000
MAX_QUERY = 500
MAX_LINE = 200
MAX_FILE_BYTES = 1_000_000
MAX_FILES = 2000
_UNITTEST_FILE = re.compile(r"^test.*\.py$")
_PYTEST_FILE = re.compile(r"^(test_.*|.*_test)\.py$")


def _tail(out: str) -> str:
    tail = out[-MAX_OUTPUT:]
    if len(out) > MAX_OUTPUT:
        tail = f"[... {len(out) - MAX_OUTPUT} earlier characters cut]\n" + tail
    return tail


def _run(argv: str | list[str], workdir: Path, timeout: float) -> dict[str, Any]:
    """Run ``argv`` (a shell command when a string) in ``workdir`` in its own process group,
    killed on timeout. Returns ``exit_code`` (None on timeout), ``passed``, ``output`` (tail)."""
    proc = subprocess.Popen(argv, shell=isinstance(argv, str), cwd=workdir,  # noqa: S602
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            errors="replace", start_new_session=True, stdin=subprocess.DEVNULL)
    try:
        out, _ = proc.communicate(timeout=timeout)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        code = None
        out = (out or "") + f"\n[timed out after {timeout:g}s]"
    return {"exit_code": code, "passed": code == 0, "output": _tail(out or "")}


def run_verification(workdir: Path, command: str, timeout: float) -> dict[str, Any]:
    """Run ``command`` (a shell command) in ``workdir``; its own process group is killed on
    timeout. Returns ``exit_code`` (None on timeout), ``passed`` and the output's tail."""
    if not command.strip():
        return {"exit_code": None, "passed": False, "output": "no verification command configured"}
    return _run(command, workdir, timeout)


def recall(store_path: Path, query: str, settings: RecallSettings) -> dict[str, Any]:
    """Episodes relevant to ``query``, best first, as the planner recalls them (same
    threshold, half-life and token budget), from the store opened read-only. Returns
    ``{"episodes": [{"lesson", "score", "outcome", "mission_id"}], "note"?}``."""
    from engine.learning import episodes
    from engine.store import Store, StoreError

    query = " ".join(query.split())[:MAX_QUERY]
    if not episodes.terms(query):
        return {"episodes": [], "note": "the query has no search terms (3+ letter words)"}
    try:
        store = Store(store_path, readonly=True)
    except StoreError:
        return {"episodes": [], "note": "no memory yet"}
    try:
        store.conn.execute("PRAGMA query_only = ON")
        found = episodes.recall(store, query, threshold=settings.threshold,
                                half_life_days=settings.half_life_days)
    except sqlite3.Error as exc:
        return {"episodes": [], "note": f"memory could not be read: {exc}"}
    finally:
        store.close()
    kept = episodes.within_budget([r.lesson for r in found], settings.tokens)
    return {"episodes": [{"lesson": r.lesson, "score": r.score,
                          "outcome": r.episode.get("outcome"),
                          "mission_id": r.episode.get("mission_id")}
                         for r in found[: len(kept)]]}


# ------------------------------------------------------------------ template tools
def _inside(workdir: Path, rel: str) -> Path | None:
    """``workdir/rel`` when it exists and resolves inside ``workdir`` (no symlink escape)."""
    path = (workdir / rel).resolve()
    if not path.exists() or not path.is_relative_to(workdir.resolve()):
        return None
    return path


def _call_scope(scope: Sequence[str], paths: Sequence[str] | None) -> list[str]:
    """The call's paths (each within ``scope``), or the whole scope."""
    if not paths:
        return list(scope)
    out = []
    for raw in paths:
        norm = scope_path(raw)
        if not in_scope(norm, scope):
            raise ToolRequestError(f"{raw!r} is outside this tool's scope ({', '.join(scope)})")
        out.append(norm)
    return out


def _files(workdir: Path, rels: Sequence[str]) -> list[str]:
    """The files under ``rels`` (files or directories; ``.git`` skipped, symlinked folders
    not followed, files resolving outside ``workdir`` dropped), repository-relative, in walk
    order, at most :data:`MAX_FILES`."""
    root = workdir.resolve()
    found: dict[str, None] = {}

    def add(file: Path) -> bool:
        # regular files only: reading a FIFO or a device would hang the server
        if file.is_file() and file.resolve().is_relative_to(root):
            found.setdefault(file.relative_to(root).as_posix(), None)
        return len(found) >= MAX_FILES

    for rel in rels:
        path = _inside(workdir, rel)
        if path is None:
            continue
        if path.is_file():
            if add(path):
                break
            continue
        for folder, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if d != ".git")
            if any(add(Path(folder) / name) for name in sorted(files)):
                return list(found)
    return list(found)


def tests_scoped(workdir: Path, verify_command: str, scope: Sequence[str], timeout: float,
                 paths: Sequence[str] | None = None, keyword: str = "") -> dict[str, Any]:
    """The project's test runner (:func:`python_test_runner`) on the test files in the scope (or
    ``paths`` within it). Returns ``exit_code``, ``passed``, ``output`` and ``ran`` (the files)."""
    runner = python_test_runner(verify_command)
    unittest = is_unittest(runner)
    pattern = _UNITTEST_FILE if unittest else _PYTEST_FILE
    targets = [f for f in _files(workdir, _call_scope(scope, paths))
               if pattern.match(f.rsplit("/", 1)[-1])]
    if not targets:
        raise ToolRequestError(f"no test files ({pattern.pattern}) exist yet in {', '.join(scope)}")
    # a file named like an option ("-c_test.py") is passed as a path, never read as one
    targets = [f"./{t}" if t.startswith("-") else t for t in targets]
    argv = [*runner, *(["-k", check_keyword(keyword)] if keyword.strip() else []), *targets]
    result = _run(argv, workdir, timeout)
    return {**result, "ran": " ".join(argv)}


def grep_scoped(workdir: Path, scope: Sequence[str], pattern: str,
                paths: Sequence[str] | None = None, ignore_case: bool = False) -> dict[str, Any]:
    """Lines matching the regular expression ``pattern`` in the scope's text files: ``matches``
    (``file:line: text``, at most :data:`MAX_MATCHES`, lines cut at :data:`MAX_LINE`
    characters) and ``truncated``."""
    if not pattern or len(pattern) > MAX_QUERY:
        raise ToolRequestError(f"pattern must have 1 to {MAX_QUERY} characters")
    try:
        regex = re.compile(pattern, re.IGNORECASE if ignore_case else 0)
    except re.error as exc:
        raise ToolRequestError(f"bad regular expression: {exc}") from None
    root = workdir.resolve()
    matches: list[str] = []
    for rel in _files(workdir, _call_scope(scope, paths)):
        file = root / rel
        if file.stat().st_size > MAX_FILE_BYTES:
            continue
        data = file.read_bytes()
        if b"\0" in data[:8192]:
            continue
        for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), start=1):
            if regex.search(line):
                text = line if len(line) <= MAX_LINE else line[: MAX_LINE - 3] + "..."
                matches.append(f"{rel}:{number}: {text}")
                if len(matches) > MAX_MATCHES:
                    return {"matches": matches[:MAX_MATCHES], "truncated": True}
    return {"matches": matches, "truncated": False}


# ------------------------------------------------------------------ the server
def build_server(workdir: Path, verify_command: str, *, timeout: float = 600.0,
                 store_path: Path | None = None, mission_id: int | None = None,
                 unit_id: str | None = None, recall_settings: RecallSettings | None = None,
                 tools: Sequence[dict[str, Any]] = ()) -> Any:
    """The session's ``MCPServer`` (run it with ``.run()`` over stdio). Raises
    :class:`ToolRequestError` for an unknown template in ``tools``."""
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError

    for tool in tools:
        if tool.get("name") not in TEMPLATES:
            raise ToolRequestError(f"unknown tool template {tool.get('name')!r}")
    names = ["run_verification runs the project's verification in your worktree"]
    if recall_settings is not None and store_path is not None:
        names.append("recall searches what earlier units and missions learned")
    names.append("report_discovery records follow-up work you noticed but is out of this "
                 "unit's scope")
    names += [f"{t['name']} ({TEMPLATES[t['name']].summary}; scope: {', '.join(t['scope'])})"
              for t in tools]
    server = MCPServer(SERVER_NAME, instructions="Mission Control tools for this work unit: "
                       + "; ".join(names) + ".", log_level="WARNING")

    @server.tool(name="run_verification")
    def verification_tool() -> dict[str, Any]:
        """Run the project's verification command in this worktree; returns exit_code,
        passed and the tail of the output."""
        return run_verification(workdir, verify_command, timeout)

    if recall_settings is not None and store_path is not None:
        settings, db = recall_settings, store_path

        @server.tool(name="recall")
        def recall_tool(query: str) -> dict[str, Any]:
            """Search the project's memory of earlier units and missions (what failed, why,
            what review said) for query (keywords: a module, a file, an error). Returns the
            relevant lessons, best first."""
            return recall(db, query, settings)

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

    for tool in tools:
        _add_template_tool(server, ToolError, tool["name"], list(tool["scope"]), workdir,
                           verify_command, timeout)
    return server


def _add_template_tool(server: Any, tool_error: type[Exception], name: str, scope: list[str],
                       workdir: Path, verify_command: str, timeout: float) -> None:
    where = ", ".join(scope)
    if name == "tests_scoped":
        def tests_tool(paths: list[str] | None = None, keyword: str = "") -> dict[str, Any]:
            try:
                return tests_scoped(workdir, verify_command, scope, timeout, paths, keyword)
            except ToolRequestError as exc:
                raise tool_error(str(exc)) from None

        tests_tool.__doc__ = (f"Run the project's tests in this unit's test files ({where}); "
                              "paths: some of them (optional); keyword: a test-name filter "
                              "(optional). Returns exit_code, passed, the output's tail and "
                              "the command run.")
        server.tool(name=name)(tests_tool)
    elif name == "grep_scoped":
        def grep_tool(pattern: str, paths: list[str] | None = None,
                      ignore_case: bool = False) -> dict[str, Any]:
            try:
                return grep_scoped(workdir, scope, pattern, paths, ignore_case)
            except ToolRequestError as exc:
                raise tool_error(str(exc)) from None

        grep_tool.__doc__ = (f"Search a regular expression in this unit's files ({where}); "
                             "paths: some of them (optional). Returns matches as "
                             "'file:line: text' and whether the list was cut.")
        server.tool(name=name)(grep_tool)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m engine.services.session_tools")
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--verify", default="")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--store", type=Path)
    parser.add_argument("--mission", type=int)
    parser.add_argument("--unit")
    parser.add_argument("--recall", help="JSON: threshold, half_life_days, tokens")
    parser.add_argument("--tools", default="[]", help='JSON: [{"name", "scope": [paths]}]')
    ns = parser.parse_args(argv)
    try:
        settings = RecallSettings(**json.loads(ns.recall)) if ns.recall else None
        tools = json.loads(ns.tools)
        server = build_server(ns.workdir.resolve(), ns.verify, timeout=ns.timeout,
                              store_path=ns.store, mission_id=ns.mission, unit_id=ns.unit,
                              recall_settings=settings, tools=tools)
    except (ValueError, TypeError, ToolRequestError) as exc:
        parser.exit(2, f"session tools: {exc}\n")
    server.run()


if __name__ == "__main__":
    main()
