"""Finding the JSON object in a model's answer."""

from __future__ import annotations

import json
import math
import re
from typing import Any

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_-]*)[ \t]*\n(.*?)```", re.S)


class PlanParseError(ValueError):
    """The answer holds no usable JSON; the message says what was wrong (sent back to the model)."""


def extract_json(text: str) -> Any:
    """The JSON value in ``text``.

    Candidates, most preferred first: ```json fenced blocks (last first), other fenced
    blocks (last first), then top-level balanced ``{...}`` objects (last first). The first
    candidate that parses wins, so a fence broken by backticks inside the JSON still falls
    back to the bare object. Raises :class:`PlanParseError` with a message fit to send back
    to the model (naming the most preferred candidate's JSON error, if there was one).
    """
    if not text or not text.strip():
        raise PlanParseError("the answer was empty; reply with one JSON object")

    fences = _FENCE.findall(text)
    candidates: list[tuple[str, str]] = []
    candidates += [
        ("```json block", body) for lang, body in reversed(fences) if lang.lower() == "json"
    ]
    candidates += [
        ("fenced block", body) for lang, body in reversed(fences) if lang.lower() != "json"
    ]
    candidates += [("{...} object", obj) for obj in reversed(balanced_objects(text))]
    first_error: tuple[str, json.JSONDecodeError] | None = None
    for label, candidate in candidates:
        try:
            return json.loads(candidate)
        except json.JSONDecodeError as exc:
            if first_error is None and label != "fenced block":
                first_error = (label, exc)
    if first_error is not None:
        label, exc = first_error
        raise PlanParseError(
            f"the {label} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}; "
            "reply with one valid JSON object in a ```json block"
        )
    start = " ".join(text.split())[:160]
    raise PlanParseError(
        "no JSON object found in the answer (expected a ```json fenced block or a {...} "
        f"object); the answer began: {start!r}"
    )


def balanced_objects(text: str) -> list[str]:
    """Top-level balanced ``{...}`` spans of ``text``, in order (string- and escape-aware)."""
    spans: list[str] = []
    depth = 0
    start = -1
    in_string = False
    escaped = False
    for i, ch in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if ch == '"' and depth > 0:
            in_string = True
        elif ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}" and depth > 0:
            depth -= 1
            if depth == 0:
                spans.append(text[start : i + 1])
    return spans


def as_number(value: Any) -> float | None:
    """A finite number from a JSON value: ``7``, ``7.5``, ``"7"``, ``"7/10"``; else ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        result = float(value)
    elif isinstance(value, str):
        match = re.fullmatch(r"\s*(-?\d+(?:\.\d+)?)\s*(?:/\s*10)?\s*", value)
        if not match:
            return None
        result = float(match.group(1))
    else:
        return None
    return result if math.isfinite(result) else None
