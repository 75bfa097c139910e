"""Event kinds the engine can emit (read from its source) and the kinds a doc lists.

The kinds are read with ``ast``: ``append_event("kind", ...)``, ``insert(..., event="kind")``
and ``set_status("<table>", ...)`` (which emits ``<table minus s>.status``). A call whose kind
is not a literal is returned separately (so a new way of emitting cannot slip past a check),
except the store's own forwarding sites in :data:`FORWARDERS`.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENGINE = ROOT / "engine"
DOC = ROOT / "docs" / "architecture.md"

# (file relative to the repo, function) whose kind is a parameter passed on, not a new kind
FORWARDERS = {("engine/store/db.py", "insert"), ("engine/store/db.py", "set_status")}


def _enclosing_functions(tree: ast.AST) -> dict[ast.AST, str]:
    """Each node -> the name of the innermost function around it (outer ones come first)."""
    owner: dict[ast.AST, str] = {}
    for func in ast.walk(tree):
        if isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
            for node in ast.walk(func):
                owner[node] = func.name
    return owner


def emitted_kinds(root: Path = ENGINE, base: Path = ROOT) -> tuple[dict[str, list[str]], list[str]]:
    """({kind: ["file:line", ...]}, [non-literal call sites]) of the ``*.py`` under ``root``."""
    kinds: dict[str, list[str]] = {}
    unknown: list[str] = []
    for path in sorted(root.rglob("*.py")):
        rel = str(path.relative_to(base))
        tree = ast.parse(path.read_text(), filename=rel)
        owner = _enclosing_functions(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            where = f"{rel}:{node.lineno}"
            forwarding = (rel, owner.get(node, "")) in FORWARDERS
            if name == "append_event" and node.args:
                arg = node.args[0]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    kinds.setdefault(arg.value, []).append(where)
                elif not forwarding:
                    unknown.append(f"{where}: append_event({ast.unparse(arg)})")
            elif name == "set_status" and node.args:
                arg = node.args[0]
                if isinstance(arg, ast.Call) and ast.unparse(arg.func).endswith("Status"):
                    continue  # OpenTelemetry's Span.set_status(Status(...)): not a store event
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    kinds.setdefault(f"{arg.value[:-1]}.status", []).append(where)
                elif not forwarding:
                    unknown.append(f"{where}: set_status({ast.unparse(arg)})")
            for keyword in node.keywords:
                if name == "insert" and keyword.arg == "event":
                    value = keyword.value
                    if isinstance(value, ast.Constant) and isinstance(value.value, str):
                        kinds.setdefault(value.value, []).append(where)
                    elif not (isinstance(value, ast.Constant) and value.value is None) and not forwarding:
                        unknown.append(f"{where}: insert(event={ast.unparse(value)})")
    return kinds, unknown


def documented_kinds(doc: Path = DOC) -> set[str]:
    """Backticked kinds in the first column of the tables of ``doc``."""
    found: set[str] = set()
    for line in doc.read_text().splitlines():
        if not line.startswith("|"):
            continue
        first = line.split("|")[1]
        found.update(re.findall(r"`([a-z_]+(?:\.[a-z_]+)*)`", first))
    return found
