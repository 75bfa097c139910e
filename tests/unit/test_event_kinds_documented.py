"""Every event kind the engine can emit is documented in docs/architecture.md.

The kinds are read from the source (``ast``): ``append_event("kind", ...)``,
``insert(..., event="kind")`` and ``set_status("<table>", ...)`` (which emits
``<table minus s>.status``). A call whose kind is not a literal fails the test too (so a new
way of emitting cannot slip past it), except the store's own forwarding sites listed below.
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


def test_the_scanner_finds_the_engine_kinds() -> None:
    """Guard against a scanner that finds nothing (and so passes vacuously)."""
    kinds, _ = emitted_kinds()
    assert {"mission.created", "unit.status", "merge.status", "agent.event", "cost",
            "approval.requested", "command", "push.result", "green.promoted"} <= set(kinds)


def test_every_emitted_event_kind_is_documented() -> None:
    kinds, unknown = emitted_kinds()
    assert not unknown, "event kinds that are not literals (make them literal or list the "\
                        f"forwarding function in FORWARDERS): {unknown}"
    missing = {kind: sites for kind, sites in kinds.items() if kind not in documented_kinds()}
    assert not missing, ("event kinds emitted by the engine but missing from the tables of "
                         f"docs/architecture.md (add a row with its payload and meaning): {missing}")


def test_the_check_fails_on_an_undocumented_kind(tmp_path: Path) -> None:
    """The check itself: a new kind in engine code and not in the doc is reported."""
    doc = tmp_path / "doc.md"
    doc.write_text("| kind | payload |\n|---|---|\n| `known.kind` | `x` |\n")
    source = tmp_path / "engine"
    source.mkdir()
    (source / "m.py").write_text('def f(store):\n    store.append_event("brand.new", x=1)\n'
                                 '    store.append_event("known.kind")\n'
                                 '    store.set_status("widgets", 1, "on")\n'
                                 '    store.append_event(kind_var)\n')
    kinds, unknown = emitted_kinds(source, base=tmp_path)
    assert set(kinds) == {"brand.new", "known.kind", "widget.status"}
    assert set(kinds) - documented_kinds(doc) == {"brand.new", "widget.status"}
    assert unknown == ["engine/m.py:5: append_event(kind_var)"]
