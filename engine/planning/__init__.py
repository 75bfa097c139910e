"""Planning: the recursive planner, its plan schema, overlap dependencies and the ambition gate.

Everything here is pure logic around one injected callable, ``ask(role, prompt) -> text``
(see :mod:`engine.planning.ask`); nothing starts processes or touches the store.
"""

from engine.planning.ambition import AmbitionVerdict, ambition_gate, combine, heuristic_score
from engine.planning.ask import Ask
from engine.planning.overlap import add_overlap_dependencies
from engine.planning.parse import PlanParseError, extract_json
from engine.planning.planner import PlanningContext, PlanningFailed, RecursivePlanner
from engine.planning.schema import (
    SPECIALISTS,
    PlannedUnit,
    PlannerAnswer,
    PlanNode,
    PlanTree,
)

__all__ = [
    "SPECIALISTS",
    "AmbitionVerdict",
    "Ask",
    "PlanNode",
    "PlanParseError",
    "PlanTree",
    "PlannedUnit",
    "PlannerAnswer",
    "PlanningContext",
    "PlanningFailed",
    "RecursivePlanner",
    "add_overlap_dependencies",
    "ambition_gate",
    "combine",
    "extract_json",
    "heuristic_score",
]
