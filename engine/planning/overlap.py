"""Overlap dependencies: leaves that will touch the same files run one after the other.

Two leaves overlap when a ``files_hint`` of one equals a hint of the other, or one is a
directory prefix of the other (``src/auth`` and ``src/auth/login.py``). A glob hint counts
from its directory part (``src/api/*.py`` -> ``src/api``). Hints naming the whole repository
(``.``, ``/``, ``*``, empty) are ignored: they would serialise every unit.
"""

from __future__ import annotations

import posixpath
import re

from engine.planning.graph import reaches
from engine.planning.schema import PlannedUnit

_GLOB = re.compile(r"[*?\[]")


def normalize_hint(hint: str) -> str:
    """A comparable form of a path hint ('' means: ignore it)."""
    path = hint.strip().replace("\\", "/")
    match = _GLOB.search(path)
    if match:
        path = path[: match.start()]
        path = path.rsplit("/", 1)[0] if "/" in path else ""
    path = posixpath.normpath(path) if path else ""
    path = path.lstrip("/")
    return "" if path in (".", "") else path


def paths_overlap(a: str, b: str) -> bool:
    """Same path, or one is a directory prefix of the other (normalized inputs)."""
    if not a or not b:
        return False
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def hints_overlap(a: list[str], b: list[str]) -> list[tuple[str, str]]:
    """The overlapping pairs between two hint lists."""
    na = [(h, normalize_hint(h)) for h in a]
    nb = [(h, normalize_hint(h)) for h in b]
    return [(ha, hb) for ha, pa in na for hb, pb in nb if paths_overlap(pa, pb)]


def add_overlap_dependencies(units: list[PlannedUnit]) -> int:
    """Add an edge between every two overlapping leaves; returns how many edges were added.

    Leaves are ordered by priority (1 first), then plan order; of two overlapping leaves
    the later one depends on the earlier. Nearer predecessors are linked first, so a group of
    leaves on one file becomes a chain. No edge is added when one already depends on the
    other (directly or transitively), so this never creates a cycle. Mutates
    ``unit.dependencies`` in place; inner nodes are left alone.
    """
    leaves = [u for u in units if u.is_leaf]
    order = sorted(range(len(leaves)), key=lambda i: (leaves[i].node.priority, i))
    ordered = [leaves[i] for i in order]
    edges: dict[str, list[str]] = {u.key: u.dependencies for u in leaves}
    added = 0
    for j, later in enumerate(ordered):
        for earlier in reversed(ordered[:j]):  # nearest first: chains, not stars
            if not hints_overlap(earlier.node.files_hint, later.node.files_hint):
                continue
            if reaches(edges, later.key, earlier.key) or reaches(edges, earlier.key, later.key):
                continue
            later.dependencies.append(earlier.key)
            added += 1
    return added
