"""Cassettes for the scripted backend: a TOML file of canned agent sessions.

See ``docs/agents.md`` for the format. Entries are tried in file order; the first
whose filters all match and that has uses left is consumed (thread safe).
"""

from __future__ import annotations

import fnmatch
import re
import threading
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.agents.types import RESULT_STATUSES, AgentRequest, FailureReason


class CassetteError(ValueError):
    """A cassette that cannot be used, phrased for the user (file, entry, key)."""


# Allowed keys per action type (besides "type").
ACTION_KEYS: dict[str, dict[str, bool]] = {  # key -> required
    "write": {"path": True, "content": True},
    "patch": {"path": True, "find": True, "replace": True, "count": False, "regex": False},
    "delete": {"path": True},
    "run": {"command": True, "check": False, "timeout": False},
    "commit": {"message": True},
    "text": {"text": True},
    "tool": {"tool": True, "input": False, "output": False, "is_error": False},
    "sleep": {"seconds": True},
    "fail": {"error": False, "reason": False, "status": False},
    "hang": {},
}
ENTRY_KEYS = {
    "role", "match", "when", "times", "cost_usd", "input_tokens", "output_tokens",
    "cache_read_tokens", "cache_write_tokens", "turns", "status", "summary", "actions",
}
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def substitute(text: str, values: dict[str, str]) -> str:
    """Replace ``{{name}}`` placeholders; unknown names are left as they are."""
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), text)


@dataclass
class Interaction:
    """One cassette entry."""

    index: int
    role: str | None = None
    match: re.Pattern[str] | None = None
    when: dict[str, str] = field(default_factory=dict)
    times: int | None = None
    cost_usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    turns: int = 1
    status: str | None = None
    summary: str | None = None
    actions: list[dict[str, Any]] = field(default_factory=list)
    used: int = 0

    def matches(self, request: AgentRequest) -> bool:
        if self.role is not None and self.role != str(request.role):
            return False
        if self.match is not None and not self.match.search(request.prompt):
            return False
        for key, pattern in self.when.items():
            value = request.metadata.get(key)
            if value is None or not fnmatch.fnmatchcase(str(value), pattern):
                return False
        return True

    def describe(self) -> str:
        parts = [f"#{self.index + 1}"]
        if self.role:
            parts.append(f"role={self.role}")
        if self.match is not None:
            parts.append(f"match={self.match.pattern!r}")
        if self.when:
            parts.append(f"when={self.when}")
        return " ".join(parts)


class Cassette:
    """Loaded cassette entries plus their use counts."""

    def __init__(self, interactions: list[Interaction], source: str = "<cassette>") -> None:
        self.interactions = interactions
        self.source = source
        self._lock = threading.Lock()

    def take(self, request: AgentRequest) -> Interaction | None:
        """Consume and return the first matching entry with uses left."""
        with self._lock:
            for entry in self.interactions:
                if entry.times is not None and entry.used >= entry.times:
                    continue
                if entry.matches(request):
                    entry.used += 1
                    return entry
        return None


def load_cassette(path: str | Path) -> Cassette:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CassetteError(f"{path}: cassette file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CassetteError(f"{path}: cannot read cassette: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise CassetteError(f"{path}: invalid TOML: {exc}") from None
    return parse_cassette(data, source=str(path))


def parse_cassette(data: dict[str, Any], source: str = "<cassette>") -> Cassette:
    """Validate decoded TOML (``[[interaction]]`` tables) into a :class:`Cassette`."""
    extra = set(data) - {"interaction"}
    if extra:
        raise CassetteError(f"{source}: unknown top-level key(s) {sorted(extra)}; "
                            "entries are [[interaction]] tables")
    raw = data.get("interaction", [])
    if not isinstance(raw, list):
        raise CassetteError(f"{source}: 'interaction' must be an array of tables")
    return Cassette([_entry(item, i, source) for i, item in enumerate(raw)], source)


def _entry(item: Any, index: int, source: str) -> Interaction:
    where = f"{source}: interaction #{index + 1}"
    if not isinstance(item, dict):
        raise CassetteError(f"{where}: must be a table")
    unknown = set(item) - ENTRY_KEYS
    if unknown:
        raise CassetteError(f"{where}: unknown key(s) {sorted(unknown)}")
    entry = Interaction(index=index)
    if "role" in item:
        entry.role = str(item["role"])
    if "match" in item:
        try:
            entry.match = re.compile(str(item["match"]), re.IGNORECASE)
        except re.error as exc:
            raise CassetteError(f"{where}: bad 'match' regex: {exc}") from None
    when = item.get("when", {})
    if not isinstance(when, dict):
        raise CassetteError(f"{where}: 'when' must be a table of globs")
    entry.when = {str(k): str(v) for k, v in when.items()}
    if "times" in item:
        if not isinstance(item["times"], int) or item["times"] < 1:
            raise CassetteError(f"{where}: 'times' must be a positive integer")
        entry.times = item["times"]
    try:
        entry.cost_usd = float(item.get("cost_usd", 0.0))
        for key in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens"):
            setattr(entry, key, int(item.get(key, 0)))
        entry.turns = int(item.get("turns", max(1, len(item.get("actions", [])))))
    except (TypeError, ValueError) as exc:
        raise CassetteError(f"{where}: {exc}") from None
    if "status" in item:
        if item["status"] not in RESULT_STATUSES:
            raise CassetteError(f"{where}: status must be one of {', '.join(RESULT_STATUSES)}")
        entry.status = item["status"]
    if "summary" in item:
        entry.summary = str(item["summary"])
    actions = item.get("actions", [])
    if not isinstance(actions, list):
        raise CassetteError(f"{where}: 'actions' must be an array of tables")
    entry.actions = [_action(a, f"{where} action #{j + 1}") for j, a in enumerate(actions)]
    return entry


def _action(action: Any, where: str) -> dict[str, Any]:
    if not isinstance(action, dict) or "type" not in action:
        raise CassetteError(f"{where}: must be a table with a 'type'")
    kind = action["type"]
    if kind not in ACTION_KEYS:
        raise CassetteError(f"{where}: unknown type {kind!r} (one of {', '.join(ACTION_KEYS)})")
    spec = ACTION_KEYS[kind]
    unknown = set(action) - set(spec) - {"type"}
    if unknown:
        raise CassetteError(f"{where} ({kind}): unknown key(s) {sorted(unknown)}")
    missing = [k for k, required in spec.items() if required and k not in action]
    if missing:
        raise CassetteError(f"{where} ({kind}): missing {', '.join(missing)}")
    if kind == "patch" and action.get("regex"):
        try:
            re.compile(action["find"])
        except (re.error, TypeError) as exc:
            raise CassetteError(f"{where} (patch): find is not a valid regex: {exc}") from None
    if kind == "fail" and "reason" in action:
        try:
            FailureReason(action["reason"])
        except ValueError:
            raise CassetteError(
                f"{where}: reason must be one of {', '.join(r.value for r in FailureReason)}"
            ) from None
    if kind == "fail" and action.get("status", "failed") not in RESULT_STATUSES:
        raise CassetteError(f"{where}: status must be one of {', '.join(RESULT_STATUSES)}")
    return dict(action)
