"""The recursive planner: objective -> plan tree of work units, validated and resolved.

One planner call decomposes one node (the objective at the top). Each child marked
``"leaf": false`` is decomposed again while the depth limit allows; sibling subtrees are
planned concurrently. Every answer is checked (JSON, schema, child count, sibling
dependencies, cycles); a rejected answer goes back to the model with the reason, up to
``max_parse_retries`` times, then :class:`PlanningFailed`. Finally inherited dependencies are
expanded to leaf keys and overlap edges are added (:mod:`engine.planning.overlap`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import anyio
from anyio.abc import TaskGroup
from pydantic import ValidationError

from engine.agents.tool_templates import describe_templates
from engine.planning.ask import PLANNER, Ask, bullets, clip
from engine.planning.graph import find_cycle
from engine.planning.overlap import add_overlap_dependencies
from engine.planning.parse import PlanParseError, extract_json
from engine.planning.schema import SPECIALISTS, PlannedUnit, PlannerAnswer, PlanTree
from engine.prompts import render

MAX_REPO_FILES = 200
MAX_ANSWER_ECHO = 4000
TOOLS_RULE = (
    "\n- `tools` (optional): session tools the unit's agent gets, scoped to its `files_hint`; "
    'a template name, or {{"name": ..., "paths": [some of its files_hint]}}. Only these '
    "templates exist:\n{templates}"
)


@dataclass
class PlanningContext:
    """What the planner knows about the mission so far."""

    objective: str
    epoch: int
    merged: list[str]
    failed: list[tuple[str, str]]
    review_feedback: list[str]
    remaining_budget_usd: float | None
    ambition_feedback: str | None = None
    memory: list[str] = field(default_factory=list)
    repo_files: list[str] = field(default_factory=list)


class PlanningFailed(Exception):
    """The planner could not produce a valid plan (after the allowed retries)."""


class _Rejected(Exception):
    """One planner answer was invalid; the message goes back to the model."""


@dataclass
class _Checked:
    answer: PlannerAnswer
    sibling_deps: list[list[int]]  # per child: indexes of the siblings it depends on


def render_context(ctx: PlanningContext) -> str:
    """The mission state section of the planner prompt."""
    failed = [f"{title}: {reason}" if reason else title for title, reason in ctx.failed]
    budget = (
        "not limited"
        if ctx.remaining_budget_usd is None
        else f"${max(ctx.remaining_budget_usd, 0.0):.2f}"
    )
    files = ctx.repo_files[:MAX_REPO_FILES]
    more = len(ctx.repo_files) - len(files)
    parts = [
        f"Epoch: {ctx.epoch}",
        f"Remaining budget: {budget}",
        "Already merged into the green branch (do not redo these):\n" + bullets(ctx.merged),
        "Failed earlier, with reasons (avoid repeating the same approach):\n" + bullets(failed),
        "Review feedback from earlier units:\n" + bullets(ctx.review_feedback),
        "Feedback on the previous plan (it was rejected as not ambitious enough):\n"
        + (ctx.ambition_feedback.strip() if ctx.ambition_feedback else "(none)"),
        "What earlier attempts learned (earlier units and missions):\n" + bullets(ctx.memory),
        f"Repository files ({len(ctx.repo_files)}):\n"
        + ("\n".join(files) if files else "(not listed)")
        + (f"\n... and {more} more" if more > 0 else ""),
    ]
    return "\n\n".join(parts)


class RecursivePlanner:
    """Builds a :class:`PlanTree` by asking the ``planner`` role, recursively."""

    def __init__(
        self,
        ask: Ask,
        *,
        max_depth: int,
        max_children: int,
        max_parse_retries: int = 2,
        concurrency: int = 4,
        tools: bool = False,
    ) -> None:
        if max_depth < 1 or max_children < 1 or max_parse_retries < 0 or concurrency < 1:
            raise ValueError("max_depth, max_children and concurrency must be >= 1, retries >= 0")
        self.ask = ask
        self.max_depth = max_depth
        self.max_children = max_children
        self.max_parse_retries = max_parse_retries
        self.concurrency = concurrency
        self.tools = tools  # the workers get session tools: offer the unit tool templates
        self.calls = 0  # planner calls made by the last plan()

    async def plan(self, ctx: PlanningContext) -> PlanTree:
        """Plan the objective; raises :class:`PlanningFailed`."""
        self.calls = 0
        limiter = anyio.CapacityLimiter(self.concurrency)
        context = render_context(ctx)
        units, rationale = await self._subtree(ctx, context, None, [], limiter)
        _expand_dependencies(units)
        add_overlap_dependencies(units)
        cycle = find_cycle({u.key: u.dependencies for u in units if u.is_leaf})
        if cycle:  # cannot happen with acyclic sibling graphs; kept as a guard
            raise PlanningFailed(f"the resolved plan has a dependency cycle: {' -> '.join(cycle)}")
        return PlanTree(units=units, rationale=rationale)

    # ------------------------------------------------------------------ recursion
    async def _subtree(
        self,
        ctx: PlanningContext,
        context: str,
        parent: PlannedUnit | None,
        lineage: list[PlannedUnit],
        limiter: anyio.CapacityLimiter,
        parent_siblings: list[PlannedUnit] | None = None,
    ) -> tuple[list[PlannedUnit], str]:
        depth = 1 if parent is None else parent.depth + 1
        prompt = self._prompt(ctx, context, parent, lineage, parent_siblings or [], depth)
        where = "the objective" if parent is None else f"node {parent.key} ({parent.title!r})"
        async with limiter:
            checked = await self._ask_valid(prompt, where)

        children: list[PlannedUnit] = []
        for index, node in enumerate(checked.answer.units, start=1):
            key = str(index) if parent is None else f"{parent.key}.{index}"
            decompose = not node.leaf and depth < self.max_depth
            children.append(
                PlannedUnit(
                    key=key,
                    parent_key=parent.key if parent else None,
                    depth=depth,
                    node=node,
                    is_leaf=not decompose,
                )
            )
        for child, deps in zip(children, checked.sibling_deps, strict=True):
            child.dependencies = [children[i].key for i in deps]

        subtrees: dict[str, list[PlannedUnit]] = {}
        errors: list[Exception] = []
        new_lineage = [*lineage, parent] if parent is not None else lineage

        async def grow(child: PlannedUnit, tg: TaskGroup) -> None:
            try:
                units, _ = await self._subtree(ctx, context, child, new_lineage, limiter, children)
                subtrees[child.key] = units
            except Exception as exc:  # first failure cancels the siblings; re-raised below
                errors.append(exc)
                tg.cancel_scope.cancel()

        async with anyio.create_task_group() as tg:
            for child in children:
                if not child.is_leaf:
                    tg.start_soon(grow, child, tg)
        if errors:
            raise errors[0]

        ordered: list[PlannedUnit] = []
        for child in children:
            ordered.append(child)
            ordered.extend(subtrees.get(child.key, []))
        return ordered, checked.answer.rationale

    async def _ask_valid(self, prompt: str, where: str) -> _Checked:
        attempt_prompt = prompt
        problems: list[str] = []
        for _attempt in range(1 + self.max_parse_retries):
            self.calls += 1
            text = await self.ask(PLANNER, attempt_prompt)
            try:
                return self._check(text)
            except _Rejected as exc:
                problems.append(str(exc))
                attempt_prompt = (
                    prompt
                    + "\n\n## Your previous answer was rejected\n\n"
                    + f"Problem: {exc}\n\nYour previous answer was:\n\n"
                    + clip(text, MAX_ANSWER_ECHO, what="answer")
                    + "\n\nReply again with the complete corrected JSON object only."
                )
        raise PlanningFailed(
            f"planner answers for {where} were rejected {len(problems)} times; "
            f"last problem: {problems[-1]}"
        )

    # ------------------------------------------------------------------ validation
    def _check(self, text: str) -> _Checked:
        try:
            data = extract_json(text)
        except PlanParseError as exc:
            raise _Rejected(str(exc)) from None
        if isinstance(data, list):
            data = {"units": data}
        if not isinstance(data, dict):
            raise _Rejected('expected a JSON object with a "units" list')
        try:
            answer = PlannerAnswer.model_validate(data)
        except ValidationError as exc:
            raise _Rejected("the JSON does not match the schema: " + _schema_errors(exc)) from None
        if len(answer.units) > self.max_children:
            raise _Rejected(
                f"you returned {len(answer.units)} units; at most {self.max_children} are "
                'allowed per node: merge related work or mark a unit "leaf": false'
            )
        names = [_norm(u.title) for u in answer.units]
        duplicates = sorted(
            {u.title for u, n in zip(answer.units, names, strict=True) if names.count(n) > 1}
        )
        if duplicates:
            raise _Rejected(f"unit titles must be unique among siblings; repeated: {duplicates}")
        index = {n: i for i, n in enumerate(names)}
        sibling_deps: list[list[int]] = []
        for i, unit in enumerate(answer.units):
            deps: list[int] = []
            for dep in unit.dependencies:
                j = index.get(_norm(dep))
                if j is None:
                    titles = ", ".join(repr(u.title) for u in answer.units if u is not unit)
                    raise _Rejected(
                        f"unit {unit.title!r} depends on {dep!r}, which is not the title of one "
                        f"of its siblings (siblings: {titles or 'none'})"
                    )
                if j == i:
                    raise _Rejected(f"unit {unit.title!r} depends on itself")
                if j not in deps:
                    deps.append(j)
            sibling_deps.append(deps)
        cycle = find_cycle({str(i): [str(j) for j in d] for i, d in enumerate(sibling_deps)})
        if cycle:
            path = " -> ".join(repr(answer.units[int(i)].title) for i in cycle)
            raise _Rejected(f"the dependencies form a cycle: {path}; remove one of them")
        return _Checked(answer=answer, sibling_deps=sibling_deps)

    # ------------------------------------------------------------------ prompts
    def _prompt(
        self,
        ctx: PlanningContext,
        context: str,
        parent: PlannedUnit | None,
        lineage: list[PlannedUnit],
        parent_siblings: list[PlannedUnit],
        depth: int,
    ) -> str:
        if parent is None:
            scope = (
                f"Decompose the objective into between 1 and {self.max_children} top-level "
                "units of work."
            )
        else:
            path = " > ".join(["objective", *(u.title for u in lineage), parent.title])
            others = [u.title for u in parent_siblings if u.key != parent.key]
            node = parent.node
            scope = "\n".join(
                [
                    "You are refining one part of a larger plan. Decompose ONLY this node into "
                    f"between 1 and {self.max_children} children:",
                    "",
                    f"- key: {parent.key} (depth {parent.depth}; its children are at depth "
                    f"{depth} of at most {self.max_depth})",
                    f"- path: {path}",
                    f"- title: {node.title}",
                    f"- description: {node.description or '(none)'}",
                    f"- files: {', '.join(node.files_hint) or '(none given)'}",
                    "- acceptance criteria:",
                    bullets(node.acceptance_criteria, empty="  (none given)"),
                    "",
                    "Other parts of the plan at this level are planned separately; do not "
                    "duplicate them:",
                    bullets(others),
                ]
            )
        if depth < self.max_depth:
            depth_rule = (
                f"These children are at depth {depth} of at most {self.max_depth}. Set "
                '"leaf": false only on a child too large for one agent session; it will be '
                'decomposed again. Otherwise keep "leaf": true.'
            )
        else:
            depth_rule = (
                f"These children are at the maximum depth ({self.max_depth}): every child "
                'must be a leaf ("leaf": true) that one agent can finish in one session.'
            )
        return render(
            "planner",
            objective=ctx.objective.strip(),
            context=context,
            scope=scope,
            depth_rule=depth_rule,
            max_children=self.max_children,
            specialists=", ".join(SPECIALISTS),
            tools_rule=TOOLS_RULE.format(templates=describe_templates()) if self.tools else "",
        )


def _norm(title: str) -> str:
    return " ".join(title.split()).casefold()


def _schema_errors(exc: ValidationError, limit: int = 8) -> str:
    lines = []
    for err in exc.errors()[:limit]:
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        lines.append(f"{loc}: {err['msg']}")
    more = len(exc.errors()) - limit
    if more > 0:
        lines.append(f"... and {more} more")
    return "; ".join(lines)


def _expand_dependencies(units: list[PlannedUnit]) -> None:
    """Give every leaf the leaf keys it must wait for: its own sibling dependencies and
    those of all its ancestors, with inner nodes expanded to the leaves under them."""
    by_key = {u.key: u for u in units}
    order = {u.key: i for i, u in enumerate(units)}
    under: dict[str, list[str]] = {}
    for unit in units:
        if not unit.is_leaf:
            continue
        key: str | None = unit.key
        while key is not None:
            under.setdefault(key, []).append(unit.key)
            key = by_key[key].parent_key
    for leaf in units:
        if not leaf.is_leaf:
            continue
        wanted: set[str] = set()
        key = leaf.key
        while key is not None:
            node = by_key[key]
            for dep in node.dependencies:
                wanted.update(under.get(dep, []))
            key = node.parent_key
        leaf.dependencies = sorted(wanted, key=order.__getitem__)
