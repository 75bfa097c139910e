"""The worker result marker: the JSON block a worker ends its final answer with.

Format (the last one in the text wins)::

    <mc-result>
    {"status": "completed", "summary": "...", "files_changed": ["a.py"],
     "discoveries": ["..."], "concerns": ["..."]}
    </mc-result>

``status`` is completed, failed or blocked. Code fences inside the tags are
tolerated, and so is a missing closing tag. Anything else gives ``None`` (the caller
then falls back to git facts).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

OPEN_TAG = "<mc-result>"
CLOSE_TAG = "</mc-result>"
MARKER_STATUSES = ("completed", "failed", "blocked")
_FENCE = re.compile(r"^\s*```[\w-]*\s*|\s*```\s*$")


@dataclass
class WorkerMarker:
    status: str
    summary: str
    files_changed: list[str] = field(default_factory=list)
    discoveries: list[str] = field(default_factory=list)
    concerns: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _str_list(value: Any) -> list[str] | None:
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value.strip() else []
    if isinstance(value, list):
        return [v if isinstance(v, str) else json.dumps(v, default=str) for v in value]
    return None


def marker_from_dict(data: Any) -> WorkerMarker | None:
    """Validate a decoded marker object."""
    if not isinstance(data, dict):
        return None
    status = str(data.get("status", "")).strip().lower()
    if status not in MARKER_STATUSES:
        return None
    summary = data.get("summary", "")
    if not isinstance(summary, str):
        return None
    lists = {}
    for key in ("files_changed", "discoveries", "concerns"):
        items = _str_list(data.get(key))
        if items is None:
            return None
        lists[key] = items
    return WorkerMarker(status=status, summary=summary.strip(), **lists)


def parse_marker(text: str) -> WorkerMarker | None:
    """The last well-formed marker in ``text``, or None if there is none."""
    if not text:
        return None
    start = text.rfind(OPEN_TAG)
    while start >= 0:
        body = text[start + len(OPEN_TAG):]
        end = body.find(CLOSE_TAG)
        marker = _decode(body[:end] if end >= 0 else body, closed=end >= 0)
        if marker is not None:
            return marker
        start = text.rfind(OPEN_TAG, 0, start)
    return None


def _decode(body: str, *, closed: bool) -> WorkerMarker | None:
    body = _FENCE.sub("", body.strip()).strip() if closed else body.strip()
    if body.startswith("```"):
        body = body.split("\n", 1)[1] if "\n" in body else ""
    try:
        if closed:
            data = json.loads(body)
        else:
            data, _ = json.JSONDecoder().raw_decode(body)
    except ValueError:
        return None
    return marker_from_dict(data)


def format_marker(marker: WorkerMarker) -> str:
    """The marker as a worker would write it (used by cassettes, tests and docs)."""
    return f"{OPEN_TAG}\n{json.dumps(marker.as_dict())}\n{CLOSE_TAG}"
