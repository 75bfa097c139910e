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

    Order of preference: the last ```json fenced block; else the last other fenced block
    that parses; else the last balanced ``{...}`` object in the text that parses.
    Raises :class:`PlanParseError` with a message fit to send back to the model.
    """
    if not text or not text.strip():
        raise PlanParseError("the answer was empty; reply with one JSON object")

    fences = _FENCE.findall(text)
    json_fences = [body for lang, body in fences if lang.lower() == "json"]
    if json_fences:
        body = json_fences[-1]
        try:
            return json.loads(body)
        except json.JSONDecodeError as exc:
            raise PlanParseError(
                f"the ```json block is not valid JSON: {exc.msg} at line {exc.lineno} "
                f"column {exc.colno}"
            ) from None
    for _lang, body in reversed(fences):
        try:
            return json.loads(body)
        except json.JSONDecodeError:
            continue

    candidates = balanced_objects(text)
    last_error: json.JSONDecodeError | None = None
    for candidate in reversed(candidates):
        try:
            return json.loads(candidate)
        except json.JSONDecodeError as exc:
            last_error = last_error or exc
    if last_error is not None:
        raise PlanParseError(
            f"found a {{...}} object but it is not valid JSON: {last_error.msg} "
            f"(line {last_error.lineno} column {last_error.colno} of that object); "
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
