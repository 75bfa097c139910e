"""What a user's A2A message asks for: the skill (``run-mission`` or ``mission-status``) and
its arguments (:func:`parse_request`), or the decision of a reply to ``input-required``
(:func:`parse_decision`). Data parts first, else the message's text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from a2a.helpers import (
    get_data_parts,
    get_message_text,
)
from a2a.types import Message

RUN_MISSION = "run-mission"
MISSION_STATUS = "mission-status"


class RequestError(ValueError):
    """A message that asks for no skill this agent has, or lacks what the skill needs."""


@dataclass
class SkillRequest:
    """What a user message asks for (from its data part, else its text)."""

    skill: str
    project: str | None = None
    objective: str = ""
    mission_id: int | None = None


def parse_request(message: Message | None) -> SkillRequest:
    """Read a request: a data part ``{"skill": "run-mission", "project": ..., "objective":
    ...}`` / ``{"skill": "mission-status", "project": ..., "mission_id": ...}``, or plain
    text (``status [project] [mission id]``; any other text is the objective of a mission on
    the project named in a data part, or on the only project)."""
    if message is None:
        raise RequestError("empty request")
    data: dict[str, Any] = {}
    for part in get_data_parts(message.parts):
        if isinstance(part, dict):
            data.update(part)
    text = get_message_text(message).strip()
    skill = str(data.get("skill") or "")
    project = data.get("project")
    mission_id = data.get("mission_id")
    if not skill:
        words = text.split()
        if words and words[0].lower() in ("status", "mission-status"):
            skill = MISSION_STATUS
            rest = words[1:]
            if rest and not rest[0].lstrip("#").isdigit():
                project = project or rest.pop(0)
            if rest and rest[0].lstrip("#").isdigit():
                mission_id = rest[0].lstrip("#")
        else:
            skill = RUN_MISSION
    if skill not in (RUN_MISSION, MISSION_STATUS):
        raise RequestError(f"unknown skill {skill!r}: use {RUN_MISSION!r} or {MISSION_STATUS!r}")
    objective = str(data.get("objective") or (text if skill == RUN_MISSION else "")).strip()
    if skill == RUN_MISSION and not objective:
        raise RequestError("run-mission needs an objective (a text part, or \"objective\" in data)")
    if mission_id is not None:
        try:
            mission_id = int(float(mission_id))
        except (TypeError, ValueError):
            raise RequestError(f"mission_id must be a number (got {mission_id!r})") from None
    return SkillRequest(skill, str(project) if project else None, objective, mission_id)


def parse_decision(message: Message | None) -> bool | None:
    """A reply to ``input-required``: True for approve, False for deny, None otherwise."""
    if message is None:
        return None
    for part in get_data_parts(message.parts):
        if isinstance(part, dict) and str(part.get("decision", "")).lower() in ("approve", "deny"):
            return str(part["decision"]).lower() == "approve"
    words = get_message_text(message).strip().lower().split()
    if words and words[0] in ("approve", "approved", "yes"):
        return True
    if words and words[0] in ("deny", "denied", "no"):
        return False
    return None
