"""The plan schema: what the planner answers (pydantic) and the resolved plan tree (dataclasses)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from engine.agents.tool_templates import ToolRequestError, normalize_request, resolve_requests

SPECIALISTS: tuple[str, ...] = (
    "general",
    "test_writer",
    "refactorer",
    "security_auditor",
    "docs_writer",
    "bug_fixer",
)
MAX_TITLE_LEN = 120


def _as_list(value: Any) -> Any:
    """A lone string where a list is expected becomes a one-item list; ``None`` an empty one."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value.strip() else []
    return value


class PlanNode(BaseModel):
    """One child as the planner describes it."""

    model_config = ConfigDict(extra="ignore")

    title: str
    description: str = ""
    files_hint: list[str] = Field(default_factory=list)
    acceptance_criteria: list[str] = Field(default_factory=list)
    priority: int = Field(3, ge=1, le=5, description="1 = most urgent, 5 = least.")
    dependencies: list[str] = Field(default_factory=list, description="Titles of siblings.")
    specialist: str = "general"
    leaf: bool = True
    tools: list[dict[str, Any]] = Field(
        default_factory=list, description="Session tools from the templates of "
        "engine/agents/tool_templates.py, scoped to files_hint; resolved to "
        '[{"name", "scope": [paths]}].')
    uncertain: bool = Field(
        False, description="The planner is unsure of the best approach: with [speculation] "
        "on, several agents try it in parallel.")

    @field_validator("title")
    @classmethod
    def _title(cls, value: str) -> str:
        value = " ".join(value.split())
        if not value:
            raise ValueError("title must not be empty")
        if len(value) > MAX_TITLE_LEN:
            raise ValueError(f"title is {len(value)} characters; keep it to {MAX_TITLE_LEN}")
        return value

    @field_validator("files_hint", "acceptance_criteria", "dependencies", mode="before")
    @classmethod
    def _lists(cls, value: Any) -> Any:
        return _as_list(value)

    @field_validator("files_hint", "acceptance_criteria", "dependencies")
    @classmethod
    def _strip_items(cls, value: list[str]) -> list[str]:
        return [item.strip() for item in value if item.strip()]

    @field_validator("tools", mode="before")
    @classmethod
    def _tool_list(cls, value: Any) -> Any:
        items = [value] if isinstance(value, dict) else _as_list(value)
        if not isinstance(items, list):
            raise ValueError("tools must be a list of template names or objects")
        try:
            return [normalize_request(item) for item in items]
        except ToolRequestError as exc:
            raise ValueError(str(exc)) from None

    @model_validator(mode="after")
    def _tools_in_scope(self) -> PlanNode:
        try:
            self.tools = resolve_requests(self.tools, self.files_hint)
        except ToolRequestError as exc:
            raise ValueError(str(exc)) from None
        return self

    @field_validator("description", mode="before")
    @classmethod
    def _description(cls, value: Any) -> Any:
        return "" if value is None else value

    @field_validator("specialist", mode="before")
    @classmethod
    def _specialist(cls, value: Any) -> Any:
        if value is None:
            return "general"
        if isinstance(value, str):
            value = value.strip().lower().replace("-", "_").replace(" ", "_") or "general"
            if value not in SPECIALISTS:
                raise ValueError(
                    f"unknown specialist {value!r}; use one of: {', '.join(SPECIALISTS)}"
                )
        return value


class PlannerAnswer(BaseModel):
    """The planner's whole answer for one node (the child count is checked by the planner)."""

    model_config = ConfigDict(extra="ignore")

    rationale: str = ""
    units: list[PlanNode] = Field(min_length=1)

    @field_validator("rationale", mode="before")
    @classmethod
    def _rationale(cls, value: Any) -> Any:
        return "" if value is None else value


@dataclass
class PlannedUnit:
    """A node of the resolved plan tree.

    ``key`` is its dotted position ("1", "1.2", ...), ``depth`` the number of parts in it.
    For a leaf, ``dependencies`` are the keys of the *leaves* that must be merged first
    (own sibling dependencies, inherited ones of its ancestors, and overlap edges, with any
    inner node expanded to its leaves). For an inner node they are the keys of the siblings
    the planner named (for display; the dispatcher only needs the leaves').
    """

    key: str
    parent_key: str | None
    depth: int
    node: PlanNode
    is_leaf: bool
    dependencies: list[str] = field(default_factory=list)

    @property
    def title(self) -> str:
        return self.node.title

    def as_row(self) -> dict[str, Any]:
        """The fields of a ``units`` row this node fills (ids and status are the caller's)."""
        return {
            "title": self.node.title,
            "description": self.node.description,
            "files_hint": list(self.node.files_hint),
            "acceptance_criteria": list(self.node.acceptance_criteria),
            "dependencies": list(self.dependencies),
            "specialist": self.node.specialist,
            "priority": self.node.priority,
            "is_leaf": int(self.is_leaf),
            "tools": [dict(t) for t in self.node.tools],
            "uncertain": int(self.node.uncertain),
        }


@dataclass
class PlanTree:
    """All planned units in pre-order (a parent before its children), plus the top rationale."""

    units: list[PlannedUnit]
    rationale: str = ""

    def leaves(self) -> list[PlannedUnit]:
        return [u for u in self.units if u.is_leaf]

    def inner(self) -> list[PlannedUnit]:
        return [u for u in self.units if not u.is_leaf]

    def by_key(self) -> dict[str, PlannedUnit]:
        return {u.key: u for u in self.units}

    def get(self, key: str) -> PlannedUnit:
        for unit in self.units:
            if unit.key == key:
                return unit
        raise KeyError(key)

    def children(self, key: str | None) -> list[PlannedUnit]:
        """Direct children of ``key`` (``None``: the top level)."""
        return [u for u in self.units if u.parent_key == key]

    def tree_text(self) -> str:
        """The plan drawn as a tree (``├─``/``└─``), one unit a line with its files: what a
        person approves at the ``plan`` gate (the approval's text, the TUI, headless, chat)."""
        lines: list[str] = []

        def walk(parent: str | None, prefix: str) -> None:
            kids = self.children(parent)
            for index, unit in enumerate(kids):
                last = index == len(kids) - 1
                files = f"  ({', '.join(unit.node.files_hint)})" if unit.node.files_hint else ""
                after = f"  after {', '.join(unit.dependencies)}" if unit.dependencies else ""
                tools = (f"  [tools: {', '.join(t['name'] for t in unit.node.tools)}]"
                         if unit.node.tools else "")
                lines.append(f"{prefix}{'└─ ' if last else '├─ '}{unit.key}. {unit.node.title}"
                             f"{files}{after}{tools}")
                walk(unit.key, prefix + ("   " if last else "│  "))

        walk(None, "")
        return "\n".join(lines)

    def outline(self, *, details: bool = True) -> str:
        """A readable indented outline (used in prompts and logs)."""
        lines: list[str] = []
        for unit in self.units:
            pad = "  " * (unit.depth - 1)
            node = unit.node
            kind = "leaf" if unit.is_leaf else "group"
            lines.append(
                f"{pad}{unit.key}. {node.title} [{kind}, {node.specialist}, priority {node.priority}]"
            )
            if not details:
                continue
            if node.description:
                lines.append(f"{pad}   description: {node.description}")
            if node.files_hint:
                lines.append(f"{pad}   files: {', '.join(node.files_hint)}")
            for criterion in node.acceptance_criteria:
                lines.append(f"{pad}   accept: {criterion}")
            if unit.dependencies:
                lines.append(f"{pad}   after: {', '.join(unit.dependencies)}")
            for tool in node.tools:
                lines.append(f"{pad}   tool: {tool['name']} ({', '.join(tool['scope'])})")
        return "\n".join(lines)
