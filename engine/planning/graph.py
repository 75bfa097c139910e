"""Small graph helpers over ``{node: [nodes it depends on]}`` maps."""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def find_cycle(edges: Mapping[str, Iterable[str]]) -> list[str] | None:
    """A dependency cycle as a closed path ``[a, b, ..., a]``, or ``None`` if there is none.

    Deterministic: nodes are visited in mapping order. Edges to unknown nodes are ignored.
    """
    white, grey, black = 0, 1, 2
    color = dict.fromkeys(edges, white)
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        color[node] = grey
        stack.append(node)
        for nxt in edges.get(node, ()):
            if nxt not in color:
                continue
            if color[nxt] == grey:
                return stack[stack.index(nxt) :] + [nxt]
            if color[nxt] == white:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        color[node] = black
        return None

    for node in edges:
        if color[node] == white:
            found = visit(node)
            if found:
                return found
    return None


def reaches(edges: Mapping[str, Iterable[str]], start: str, target: str) -> bool:
    """Whether ``target`` is reachable from ``start`` by following dependency edges."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        node = todo.pop()
        if node == target:
            return True
        if node in seen:
            continue
        seen.add(node)
        todo.extend(edges.get(node, ()))
    return False
