"""Per-unit session tools: the fixed set of templates the planner may ask for.

The planner cannot hand a worker an arbitrary command. It may name, per unit, templates from
:data:`TEMPLATES`; each becomes one MCP tool of that unit's sessions
(``engine/services/session_tools.py``), scoped to the unit's files:

- ``tests_scoped``: the project's Python test runner (pytest, or unittest when the
  verification command uses it) on the test files inside the unit's scope, optional
  ``paths`` (within the scope) and ``keyword`` (pytest ``-k``) at call time;
- ``grep_scoped``: a regular-expression search over the files inside the scope (read-only,
  no subprocess), at most :data:`MAX_MATCHES` matches.

A request is ``{"name": <template>, "paths": [...]}`` (a bare name means the unit's whole
``files_hint``); every path must be one of the unit's hints or lie under one. Unknown names,
paths outside the hints and tools on a unit without hints are rejected with the reason, which
goes back to the planner. The scope is a list of repository-relative paths (a glob hint counts
from its directory part: ``src/api/*.py`` -> ``src/api``).
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.agents.permissions import command_heads

MAX_MATCHES = 100
MAX_KEYWORD = 200
_GLOB = re.compile(r"[*?\[]")
_KEYWORD = re.compile(r"^[A-Za-z0-9_ .\-\[\]()]*$")


@dataclass(frozen=True)
class ToolTemplate:
    """One template: its name (also the MCP tool's name) and what the planner is told."""

    name: str
    summary: str


TEMPLATES: Mapping[str, ToolTemplate] = {t.name: t for t in (
    ToolTemplate("tests_scoped", "run the project's Python test runner (pytest or unittest) on "
                 "the test files among the unit's files_hint, not the whole suite"),
    ToolTemplate("grep_scoped", "search a regular expression in the unit's files_hint "
                 "(read-only; file, line number and line of each match)"),
)}


class ToolRequestError(ValueError):
    """A tool request the planner may not make (unknown template, path out of scope)."""


def template_names() -> list[str]:
    return sorted(TEMPLATES)


def describe_templates() -> str:
    """One line per template, for the planner prompt."""
    return "\n".join(f"  - `{t.name}`: {t.summary}" for t in TEMPLATES.values())


def scope_path(path: str) -> str:
    """A repository-relative, normalised form of a path or hint ('' : none, or the whole
    repository, which is no scope). Raises :class:`ToolRequestError` for ``..`` escapes."""
    text = str(path).strip().replace("\\", "/")
    match = _GLOB.search(text)
    if match:
        text = text[: match.start()]
        text = text.rsplit("/", 1)[0] if "/" in text else ""
    text = posixpath.normpath(text).lstrip("/") if text else ""
    if text == ".." or text.startswith("../"):
        raise ToolRequestError(f"path {path!r} leaves the repository")
    return "" if text in (".", "") else text


def _hint_scope(hint: str) -> str:
    try:
        return scope_path(hint)
    except ToolRequestError:
        return ""


def in_scope(path: str, scope: Iterable[str]) -> bool:
    """Whether ``path`` (normalised) is one of ``scope`` or lies under one of them."""
    return bool(path) and any(path == s or path.startswith(s + "/") for s in scope if s)


def normalize_request(value: Any) -> dict[str, Any]:
    """``"grep_scoped"`` or ``{"name": ..., "paths": [...]}`` -> ``{"name", "paths"}``."""
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, Mapping):
        raise ToolRequestError(f"a tool is a template name or an object with a name, got {value!r}")
    name = str(value.get("name") or value.get("template") or "").strip()
    if name not in TEMPLATES:
        raise ToolRequestError(f"unknown tool template {name!r}; use one of: "
                               f"{', '.join(template_names())}")
    paths = value.get("paths") or value.get("scope") or []
    if isinstance(paths, str):
        paths = [paths]
    if not isinstance(paths, list):
        raise ToolRequestError(f"tool {name!r}: paths must be a list of the unit's files")
    return {"name": name, "paths": [str(p).strip() for p in paths if str(p).strip()]}


def resolve_requests(requests: Sequence[Any], files_hint: Sequence[str]) -> list[dict[str, Any]]:
    """Check a unit's tool requests against its ``files_hint``; returns
    ``[{"name", "scope": [paths]}]`` in request order. Raises :class:`ToolRequestError`.
    Hints that leave the repository are no scope (and no error: a plan without tools may
    name them, as it always could)."""
    if not requests:
        return []
    hints = [h for h in (_hint_scope(h) for h in files_hint) if h]
    out: list[dict[str, Any]] = []
    for raw in requests:
        request = normalize_request(raw)
        name = request["name"]
        if any(r["name"] == name for r in out):
            raise ToolRequestError(f"tool {name!r} is requested twice")
        if not hints:
            raise ToolRequestError(f"tool {name!r} is scoped to the unit's files, and the unit "
                                   "names none: give it a files_hint or drop the tool")
        scope: list[str] = []
        for path in request["paths"]:
            norm = scope_path(path)
            if not in_scope(norm, hints):
                raise ToolRequestError(f"tool {name!r}: path {path!r} is not among the unit's "
                                       f"files_hint ({', '.join(hints)})")
            scope.append(norm)
        out.append({"name": name, "scope": list(dict.fromkeys(scope or hints))})
    return out


def python_test_runner(verify_command: str) -> list[str]:
    """The argv prefix of the project's Python test runner, read from the verification
    command: its pytest part (``uv run pytest``, ``python -m pytest``) or its unittest part
    (``python3 -m unittest``); ``python3 -m pytest`` when it names neither."""
    for head in command_heads(verify_command):
        words = shlex.split(head)
        if words and (posixpath.basename(words[-1]) in ("pytest", "py.test")
                      or words[-2:] == ["-m", "pytest"]):
            return words
    for head in command_heads(verify_command):
        words = shlex.split(head)
        if words[-2:] == ["-m", "unittest"]:
            return words
    return ["python3", "-m", "pytest"]


def is_unittest(runner: Sequence[str]) -> bool:
    return list(runner[-2:]) == ["-m", "unittest"]


def check_keyword(keyword: str) -> str:
    """A pytest ``-k`` expression made of names, spaces, ``and``/``or``/``not`` and
    parentheses only (no options, no shell). Raises :class:`ToolRequestError`."""
    keyword = keyword.strip()
    if len(keyword) > MAX_KEYWORD or keyword.startswith("-") or not _KEYWORD.match(keyword):
        raise ToolRequestError("keyword may hold test names, spaces, and/or/not and "
                               f"parentheses only (at most {MAX_KEYWORD} characters)")
    return keyword
