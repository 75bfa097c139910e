"""Plan tree pane: units by epoch and parent, with status icon, specialist and cost; a unit
worked by speculation branches shows them under it (approach, state, cost)."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.message import Message
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from mc_tui.widgets.fmt import STATUS_STYLE, clip, resolve_style, usd
from mc_tui.widgets.mission_state import Changes, MissionState


class PlanTree(Tree[str]):
    """Tree keyed by unit id; labels change in place, nodes are added by key."""

    class UnitHighlighted(Message):
        def __init__(self, unit_id: str | None) -> None:
            super().__init__()
            self.unit_id = unit_id

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("plan", **kwargs)
        self.show_root = False
        self.guide_depth = 2
        self._unit_nodes: dict[str, TreeNode[str]] = {}
        self._labels: dict[str, Text] = {}
        # speculation branch nodes, keyed "<unit>#<n>" (their data is the unit's id)
        self._branch_nodes: dict[str, TreeNode[str]] = {}
        self._branch_attempt: dict[str, int] = {}
        self.filter_text = ""
        self.palette: dict[str, str] = {}
        self._state: MissionState | None = None

    # ------------------------------------------------------------------ updates
    def refresh_from(self, state: MissionState, changes: Changes) -> None:
        self._state = state
        if changes.reloaded:
            self._rebuild()
            return
        for epoch_id in changes.rows["epochs"]:
            self._ensure_epoch(epoch_id)
        changed = sorted(changes.rows["units"], key=self._created_key)
        for unit_id in changed:
            self._ensure_unit(unit_id)
        # inner nodes show their subtree's cost: relabel the ancestors of what changed
        for ancestor in self._ancestors(changed):
            self._ensure_unit(ancestor)

    def _ancestors(self, unit_ids: list[str]) -> list[str]:
        assert self._state is not None
        seen: list[str] = []
        for unit_id in unit_ids:
            parent = (self._state.units.get(unit_id) or {}).get("parent_id")
            while parent and parent not in seen:
                seen.append(parent)
                parent = (self._state.units.get(parent) or {}).get("parent_id")
        return seen

    def _created_key(self, unit_id: str) -> tuple[float, str]:
        unit = self._state.units.get(unit_id) if self._state else None
        return ((unit or {}).get("created_at") or 0.0, unit_id)

    def _rebuild(self) -> None:
        """Full rebuild: start-up, a new mission, the filter or the theme changed."""
        self.clear()
        self._unit_nodes.clear()
        self._labels.clear()
        self._branch_nodes.clear()
        self._branch_attempt.clear()
        if self._state is None:
            return
        for epoch_id in sorted(self._state.epochs):
            self._ensure_epoch(epoch_id)
        for unit_id in sorted(self._state.units, key=self._created_key):
            self._ensure_unit(unit_id)

    def restyle(self, palette: dict[str, str]) -> None:
        self.palette = palette
        self._rebuild()

    def set_filter(self, text: str) -> None:
        self.filter_text = text.strip()
        self._rebuild()

    # ------------------------------------------------------------------ nodes
    def _ensure_epoch(self, epoch_id: int) -> TreeNode[str] | None:
        assert self._state is not None
        epoch = self._state.epochs.get(epoch_id)
        if epoch is None:
            return None
        key = f"epoch-{epoch_id}"
        label = Text.assemble(
            (f"Epoch {epoch['number']}", "bold"), "  ",
            (epoch["status"], resolve_style(STATUS_STYLE.get(epoch["status"], ("", ""))[1], self.palette)),
        )
        node = self._unit_nodes.get(key)
        if node is None:
            node = self.root.add(label, data=key, expand=True)
            self._unit_nodes[key] = node
            self._labels[key] = label
        elif self._labels.get(key) != label:
            node.set_label(label)
            self._labels[key] = label
        return node

    def _visible(self, unit_id: str) -> bool:
        if not self.filter_text:
            return True
        assert self._state is not None
        needle = self.filter_text.lower()

        def match(uid: str) -> bool:
            u = self._state.units.get(uid) if self._state else None
            if u is None:
                return False
            hay = f"{uid} {u['title']} {u['status']} {u.get('specialist', '')}".lower()
            return needle in hay

        if match(unit_id):
            return True
        # keep ancestors of matches, so the tree stays a tree
        return any(
            match(uid) for uid in self._descendants(unit_id)
        )

    def _descendants(self, unit_id: str) -> list[str]:
        assert self._state is not None
        out: list[str] = []
        frontier = [unit_id]
        while frontier:
            parent = frontier.pop()
            kids = [u for u, row in self._state.units.items() if row.get("parent_id") == parent]
            out.extend(kids)
            frontier.extend(kids)
        return out

    def unit_label(self, unit: dict[str, Any]) -> Text:
        icon, style = STATUS_STYLE.get(unit["status"], ("•", ""))
        colour = resolve_style(style, self.palette)
        parts: list[Any] = [(icon, colour), " "]
        cost = unit.get("cost_usd") or 0.0
        if not unit.get("is_leaf") and self._state is not None and unit.get("id"):
            cost += sum(
                self._state.units[d].get("cost_usd") or 0.0 for d in self._descendants(unit["id"])
            )
        if cost:  # before the title: narrow panes crop the end of the line
            parts += [(usd(cost), "dim"), " "]
        parts.append(clip(unit["title"], 48))
        if unit.get("is_leaf"):
            parts += ["  ", (unit.get("specialist") or "general", "italic dim")]
            if unit.get("uncertain"):
                parts += [" ", ("uncertain", "dim")]
            if unit.get("stacked_on") and unit["status"] not in ("merged", "planned", "ready"):
                parts += [" ", ("stacked", "dim")]  # on dependencies not merged when it began
        if unit["status"] in ("failed", "blocked") and unit.get("reason"):
            parts += ["  ", (clip(unit["reason"], 30), colour)]
        return Text.assemble(*parts)

    def _ensure_unit(self, unit_id: str) -> TreeNode[str] | None:
        assert self._state is not None
        unit = self._state.units.get(unit_id)
        if unit is None or not self._visible(unit_id):
            return None
        label = self.unit_label(unit)
        node = self._unit_nodes.get(unit_id)
        if node is not None:
            if self._labels.get(unit_id) != label:
                node.set_label(label)
                self._labels[unit_id] = label
            self._ensure_branches(unit_id, node)
            return node
        parent_node: TreeNode[str] | None = None
        if unit.get("parent_id") and unit["parent_id"] in self._state.units:
            parent_node = self._ensure_unit(unit["parent_id"])
        if parent_node is None and unit.get("epoch_id") is not None:
            parent_node = self._ensure_epoch(unit["epoch_id"])
        if parent_node is None:
            parent_node = self.root
        if unit.get("is_leaf"):
            node = parent_node.add_leaf(label, data=unit_id)
        else:
            node = parent_node.add(label, data=unit_id, expand=True)
        self._unit_nodes[unit_id] = node
        self._labels[unit_id] = label
        self._ensure_branches(unit_id, node)
        return node

    # ------------------------------------------------------------------ speculation branches
    def branch_label(self, entry: dict[str, Any]) -> Text:
        """``⑂ 2 verified  $0.25  tests 2/0 diff 9  Start from the tests…``."""
        state = str(entry.get("state") or "running")
        style = {"winner": "bold $success", "verified": "$success", "running": "$primary",
                 "lost": "dim", "tests failed": "$error", "no work": "$error",
                 "forbidden": "$error"}.get(state, "")
        parts: list[Any] = [("⑂ ", "dim"), (f"{entry.get('branch')} {state}",
                                            resolve_style(style, self.palette))]
        if entry.get("cost_usd"):
            parts += ["  ", (usd(float(entry["cost_usd"])), "dim")]
        if entry.get("tests_passed") is not None and state not in ("running", "no work"):
            parts += [f"  tests {entry.get('tests_passed', 0)}/{entry.get('tests_failed', 0)}"]
        if entry.get("diff_lines"):
            parts += [f" diff {entry['diff_lines']}"]
        if entry.get("review_score") is not None:
            parts += [f" review {float(entry['review_score']):.1f}"]
        if entry.get("approach"):
            parts += ["  ", (clip(str(entry["approach"]), 36), "italic dim")]
        return Text.assemble(*parts)

    def _ensure_branches(self, unit_id: str, node: TreeNode[str]) -> None:
        """The unit's branches (its latest attempt's) as children of its node."""
        assert self._state is not None
        attempt, entries = self._state.branches.get(unit_id, (0, {}))
        if not entries:
            return
        if self._branch_attempt.get(unit_id) != attempt:  # a new attempt: new branches
            for key in [k for k in self._branch_nodes if k.startswith(f"{unit_id}#")]:
                self._branch_nodes.pop(key).remove()
                self._labels.pop(key, None)
            self._branch_attempt[unit_id] = attempt
        if not node.allow_expand:
            node.allow_expand = True
            node.expand()
        for number in sorted(entries):
            key = f"{unit_id}#{number}"
            label = self.branch_label(entries[number])
            child = self._branch_nodes.get(key)
            if child is None:
                self._branch_nodes[key] = node.add_leaf(label, data=unit_id)
            elif self._labels.get(key) != label:
                child.set_label(label)
            self._labels[key] = label

    def branch_labels(self, unit_id: str) -> list[str]:
        """The plain text of a unit's branch lines, in order (what the pane shows)."""
        return [str(node.label) for key, node in sorted(self._branch_nodes.items())
                if key.startswith(f"{unit_id}#")]

    # ------------------------------------------------------------------ selection
    def selected_unit(self) -> str | None:
        node = self.cursor_node
        if node is None or node.data is None or node.data.startswith("epoch-"):
            return None
        return node.data

    def select_unit(self, unit_id: str) -> bool:
        node = self._unit_nodes.get(unit_id)
        if node is None:
            return False
        self.move_cursor(node)
        return True

    def on_tree_node_highlighted(self, event: Tree.NodeHighlighted[str]) -> None:
        event.stop()
        self.post_message(self.UnitHighlighted(self.selected_unit()))
