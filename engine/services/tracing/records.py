"""The shapes a trace is built from: finished spans, open spans, and a mission's entities.

:class:`SpanRecord` is what a sink receives; ``_Open``, ``_Entity`` and ``_Mission`` are the
builder's working state. Identity is derived, never random (:func:`mission_seed`,
:func:`trace_id_for`); :func:`clip`, :func:`strip_userinfo` and :func:`provider_of` shape
attribute values. The span tree and the attribute vocabulary are described in
:mod:`engine.services.tracing.spans`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from engine.store import Store

MAX_TEXT = 300  # characters of a title / reason kept on a span
MAX_SPAN_EVENTS = 64  # span events kept per span (status changes, tool calls)

TERMINAL_MISSION = {"completed", "not_pushed", "stopped", "stalled", "failed", "interrupted"}
ERROR_MISSION = {"failed", "stalled", "interrupted"}
ACTIVE_UNIT = {"running", "reviewing", "queued", "merging", "verifying", "fixup"}
FINAL_UNIT = {"merged", "failed", "blocked", "cancelled"}
ERROR_UNIT = {"failed", "blocked"}
ACTIVE_MERGE = {"merging", "verifying"}
ERROR_VERIFICATION = {"failed", "timeout", "error"}
# children are ended before their parents
CLOSE_ORDER = ("attempt", "approval", "verification", "push", "batch", "unit", "epoch", "mission")

# gen_ai.provider.name by backend (semantic-conventions well-known values); gen_ai.system
# (the attribute it replaced) gets the same value except for Gemini.
PROVIDERS = {"claude": "anthropic", "codex": "openai", "gemini": "gcp.gemini",
             "scripted": "mc.scripted"}  # a custom friendly name: no model is called
MODEL_PREFIXES = (("claude", "anthropic"), ("sonnet", "anthropic"), ("opus", "anthropic"),
                  ("haiku", "anthropic"), ("gpt", "openai"), ("o1", "openai"),
                  ("o3", "openai"), ("o4", "openai"), ("codex", "openai"),
                  ("gemini", "gcp.gemini"))

UNSET, OK, ERROR = "unset", "ok", "error"


@dataclass
class SpanRecord:
    """One finished span, ready for an exporter. Times are seconds since the epoch."""

    name: str
    trace_id: int
    span_id: int
    parent_id: int | None
    kind: str  # "internal" | "client"
    start: float
    end: float
    attributes: dict[str, Any]
    events: list[tuple[str, float, dict[str, Any]]] = field(default_factory=list)
    links: list[tuple[int, int, dict[str, Any]]] = field(default_factory=list)  # trace, span
    status: str = UNSET
    description: str | None = None


@dataclass
class _Open:
    name: str
    span_id: int
    parent_id: int | None
    kind: str
    start: float
    opened_by: int
    attributes: dict[str, Any]
    events: list[tuple[str, float, dict[str, Any]]] = field(default_factory=list)
    links: list[tuple[int, int, dict[str, Any]]] = field(default_factory=list)


@dataclass
class _Entity:
    key: tuple[str, Any]
    name: str
    kind: str
    parent: tuple[str, Any] | None
    base: dict[str, Any]  # attributes every span of this entity carries
    open: _Open | None = None
    first_span: int | None = None
    last_span: int | None = None
    interrupted: bool = False  # ended by an interruption: what goes on continues it


@dataclass
class _Mission:
    id: int
    trace_id: int
    seed: str
    entities: dict[tuple[str, Any], _Entity] = field(default_factory=dict)
    epoch: tuple[str, Any] | None = None  # the newest epoch
    push: tuple[str, Any] | None = None
    batch_members: dict[str, set[int]] = field(default_factory=dict)
    batch_outcomes: dict[str, dict[str, int]] = field(default_factory=dict)
    costs: dict[str | None, float] = field(default_factory=dict)  # unit id (None: mission)
    response_models: dict[int, str] = field(default_factory=dict)
    tokens: dict[int, dict[str, Any]] = field(default_factory=dict)
    ended: bool = False
    export_after: int = 0  # spans ended by events up to this id were exported before


def _hash(text: str, size: int) -> int:
    value = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=size).digest(), "big")
    return value or 1  # all-zero ids are invalid


def mission_seed(store: Store, mission_id: int) -> str:
    """What a mission's trace id is derived from: project path, mission id, start time."""
    rows = store.query(
        "SELECT m.started_at, p.path FROM missions m LEFT JOIN projects p ON p.id = m.project_id"
        " WHERE m.id = ?", (mission_id,))
    started, path = (rows[0]["started_at"], rows[0]["path"]) if rows else (None, None)
    return f"mission-control|{path or ''}|{mission_id}|{started!r}"


def trace_id_for(store: Store, mission_id: int) -> str:
    """The trace id of a mission, as the 32 hex digits a trace viewer searches for."""
    return f"{_hash(mission_seed(store, mission_id), 16):032x}"


def clip(value: Any, limit: int = MAX_TEXT) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def strip_userinfo(url: str) -> str:
    """A URL without ``user:password@`` (remotes may carry credentials)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def provider_of(backend: str, model: str | None) -> str:
    """``gen_ai.provider.name`` of a session: from the backend, else from the model name."""
    if backend in PROVIDERS:
        return PROVIDERS[backend]
    name = (model or "").lower().rsplit("/", 1)[-1]
    for prefix, provider in MODEL_PREFIXES:
        if name.startswith(prefix):
            return provider
    return "_OTHER"

