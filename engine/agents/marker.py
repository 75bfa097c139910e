"""The worker result marker: the JSON block a worker ends its final answer with.

Format (the last one in the text wins)::

    <mc-result>
    {"status": "completed", "summary": "...", "files_changed": ["a.py"],
     "discoveries": ["..."], "gotchas": ["..."], "conventions": ["..."],
     "concerns": ["..."]}
    </mc-result>

``discoveries``, ``gotchas`` and ``conventions`` (the typed context, see
``engine/learning/context.py``) are strings or objects ``{"text": "...", "paths":
["src/api/", "*.py"]}`` naming the scope; the lists hold their texts, ``paths`` the scope
each text was given, and :meth:`WorkerMarker.context_items` the (kind, text, paths) triples.

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
    gotchas: list[str] = field(default_factory=list)
    conventions: list[str] = field(default_factory=list)
    paths: dict[str, list[str]] = field(default_factory=dict, compare=False)

    def context_items(self) -> list[tuple[str, str, list[str]]]:
        """(kind, text, scope paths) of every discovery, gotcha and convention (kind:
        ``discovery``, ``gotcha`` or ``convention``)."""
        return [(KIND_NAMES[kind], text, list(self.paths.get(text, [])))
                for kind in CONTEXT_KINDS for text in getattr(self, kind)]

    def as_dict(self) -> dict[str, Any]:
        """The marker's JSON object (context items with paths as ``{"text", "paths"}``)."""
        data = asdict(self)
        paths = data.pop("paths")
        for kind in CONTEXT_KINDS:
            data[kind] = [{"text": t, "paths": paths[t]} if paths.get(t) else t
                          for t in data[kind]]
        return data


CONTEXT_KINDS = ("discoveries", "gotchas", "conventions")
KIND_NAMES = {"discoveries": "discovery", "gotchas": "gotcha", "conventions": "convention"}


def _context_items(kind: str, value: Any) -> list[tuple[str, str, list[str]]] | None:
    """(kind, text, paths) of one context list; None when it is not a list of strings or
    ``{"text", "paths"}`` objects."""
    if value is None:
        return []
    if isinstance(value, str | dict):
        value = [value]
    if not isinstance(value, list):
        return None
    items: list[tuple[str, str, list[str]]] = []
    for item in value:
        if isinstance(item, str):
            text, paths = item, []
        elif isinstance(item, dict) and isinstance(item.get("text"), str):
            text, raw = item["text"], item.get("paths", item.get("scope")) or []
            raw = [raw] if isinstance(raw, str) else raw
            if not isinstance(raw, list):
                return None
            paths = [str(p).strip() for p in raw if str(p).strip()]
        else:  # lenient like the other lists: keep what the worker said
            text, paths = json.dumps(item, default=str), []
        if text.strip():
            items.append((kind, " ".join(text.split()), paths))
    return items


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
    lists: dict[str, Any] = {}
    for key in ("files_changed", "concerns"):
        items = _str_list(data.get(key))
        if items is None:
            return None
        lists[key] = items
    paths: dict[str, list[str]] = {}
    for kind in CONTEXT_KINDS:
        context = _context_items(kind, data.get(kind))
        if context is None:
            return None
        lists[kind] = [text for _, text, _ in context]
        paths.update({text: scope for _, text, scope in context if scope})
    return WorkerMarker(status=status, summary=summary.strip(), paths=paths, **lists)


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
