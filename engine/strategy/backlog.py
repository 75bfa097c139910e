"""The persistent backlog: follow-up work kept in the store across missions.

An item has a title, a track (``feature``, ``quality``, ``security``, ``tests``), evidence
(file:line, tool output), impact and effort (integers 1-5), a state (``open``, ``deferred``,
``in_progress``, ``done``, ``dropped``), its age (from ``created_at``) and a priority score.

Priority (see ``docs/learning.md``, "Discovery and backlog")::

    score = track_weight × impact / effort × (1 + min(age_days, 90) / 30)

The first factor is the classic value/cost ratio ("weighted shortest job first": cost of
delay over job size, Reinertsen, *The Principles of Product Development Flow*, 2009); the
second is *aging*, the textbook cure for starvation in priority scheduling (Silberschatz et
al., *Operating System Concepts*, ch. 5): an item waiting 90 days counts four times as much,
so old small items eventually beat new large ones. ``mc priority set ID SCORE`` pins a score
(``score_override``) that recalculation leaves alone.

Markdown form (``mc priority import`` / ``export``), one item per line::

    - [ ] Title | track=security impact=4 effort=2 id=7 | evidence: src/db.py:42 S608 ...

``[ ]`` open, ``[~]`` deferred, ``[>]`` in progress, ``[x]`` done, ``[-]`` dropped. The middle
part holds ``key=value`` pairs (all optional: ``track``, ``impact``, ``effort``, ``id``,
``score`` (a pinned score)); the evidence part is optional. Other lines (headings, text,
blank) are ignored.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.store import Store

TRACKS = ("feature", "quality", "security", "tests")
STATES = ("open", "deferred", "in_progress", "done", "dropped")
ACTIVE = ("open", "deferred", "in_progress")
DEFAULT_TRACK_WEIGHTS: dict[str, float] = {
    "security": 1.5, "tests": 1.2, "quality": 1.0, "feature": 1.0,
}
AGE_CAP_DAYS = 90.0
AGE_SCALE_DAYS = 30.0
MAX_TITLE = 300
MAX_EVIDENCE = 4000
_BOX = {" ": "open", "~": "deferred", ">": "in_progress", "x": "done", "X": "done", "-": "dropped"}
_BOX_OF = {"open": " ", "deferred": "~", "in_progress": ">", "done": "x", "dropped": "-"}
_LINE = re.compile(r"^\s*[-*]\s*\[(?P<box>[ ~>xX-])\]\s+(?P<rest>.+?)\s*$")


class BacklogError(ValueError):
    """Bad backlog input (names the line or the field)."""


@dataclass
class BacklogItem:
    """One item as added or imported (``id`` set when it updates an existing row)."""

    title: str
    track: str = "feature"
    evidence: str = ""
    impact: int = 3
    effort: int = 3
    state: str = "open"
    score_override: float | None = None
    source: str = "manual"
    id: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> BacklogItem:
        self.title = " ".join(self.title.split())[:MAX_TITLE]
        if not self.title:
            raise BacklogError("title: must not be empty")
        if self.track not in TRACKS:
            raise BacklogError(f"track: {self.track!r} is not one of {', '.join(TRACKS)}")
        if self.state not in STATES:
            raise BacklogError(f"state: {self.state!r} is not one of {', '.join(STATES)}")
        for name in ("impact", "effort"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 1 <= value <= 5:
                raise BacklogError(f"{name}: must be an integer 1-5, got {value!r}")
        self.evidence = self.evidence.strip()[:MAX_EVIDENCE]
        return self


def fingerprint(title: str, track: str) -> str:
    """The de-duplication key: the track and the title's lowercased words."""
    words = " ".join(re.findall(r"[a-z0-9]+", title.lower()))
    return hashlib.sha1(f"{track}:{words}".encode()).hexdigest()[:16]


def priority_score(impact: int, effort: int, age_days: float, track: str,
                   weights: Mapping[str, float] | None = None) -> float:
    """``track_weight × impact / effort × (1 + min(age_days, 90) / 30)``, rounded to 3 places.

    ``impact`` and ``effort`` are 1-5, ``age_days`` ≥ 0; an unknown track weighs 1.0.
    """
    w = (weights or DEFAULT_TRACK_WEIGHTS).get(track, 1.0)
    age = min(max(age_days, 0.0), AGE_CAP_DAYS)
    return round(w * impact / effort * (1 + age / AGE_SCALE_DAYS), 3)


class Backlog:
    """The ``backlog`` table of a store, with the priority formula's track weights."""

    def __init__(self, store: Store, weights: Mapping[str, float] | None = None,
                 now: float | None = None) -> None:
        self.store = store
        self.weights = {**DEFAULT_TRACK_WEIGHTS, **(weights or {})}
        self._now = now

    def now(self) -> float:
        return self._now if self._now is not None else time.time()

    def _score(self, row: Mapping[str, Any]) -> float:
        age = (self.now() - float(row["created_at"])) / 86400
        return priority_score(int(row["impact"]), int(row["effort"]), age, str(row["track"]),
                              self.weights)

    # ------------------------------------------------------------------ reading
    def items(self, states: Iterable[str] | None = ACTIVE) -> list[dict[str, Any]]:
        """Items (default: not done or dropped), highest effective score first; each row has
        ``effective_score`` (the pinned score, else the stored one) and ``age_days``."""
        rows = self.store.rows("backlog")
        wanted = set(states) if states is not None else None
        out = []
        for row in rows:
            if wanted is not None and row["state"] not in wanted:
                continue
            row["effective_score"] = (row["score_override"] if row["score_override"] is not None
                                      else row["score"])
            row["age_days"] = round((self.now() - row["created_at"]) / 86400, 1)
            out.append(row)
        out.sort(key=lambda r: (r["state"] != "open", -r["effective_score"], r["id"]))
        return out

    def get(self, item_id: int) -> dict[str, Any]:
        row = self.store.get("backlog", item_id)
        if row is None:
            raise BacklogError(f"no backlog item #{item_id}")
        return row

    def next_open(self, limit: int = 10) -> list[dict[str, Any]]:
        """The open items, best first."""
        return [r for r in self.items(("open",))][:limit]

    # ------------------------------------------------------------------ writing
    def add(self, item: BacklogItem) -> tuple[int, bool]:
        """Insert ``item``, or merge it into the item with the same fingerprint (or ``id``):
        evidence is appended when new, impact keeps the larger value. Returns (id, created)."""
        item.validate()
        fp = fingerprint(item.title, item.track)
        now = self.now()
        existing = (self.store.get("backlog", item.id) if item.id is not None else None) \
            or next(iter(self.store.rows("backlog", "fingerprint = ?", (fp,))), None)
        if existing is not None:
            evidence = existing["evidence"]
            if item.evidence and item.evidence not in evidence:
                evidence = (evidence + "\n" + item.evidence).strip()[:MAX_EVIDENCE]
            fields: dict[str, Any] = {"evidence": evidence, "updated_at": now,
                                      "impact": max(int(existing["impact"]), item.impact)}
            if item.source in ("import", "manual"):  # a person's word wins over a tool's
                fields.update(impact=item.impact, effort=item.effort, state=item.state,
                              title=item.title, track=item.track)
                if item.score_override is not None:
                    fields["score_override"] = item.score_override
            merged = {**existing, **fields}
            fields["score"] = self._score(merged)
            self.store.update("backlog", existing["id"], **fields)
            return int(existing["id"]), False
        row = {
            "title": item.title, "track": item.track, "evidence": item.evidence,
            "impact": item.impact, "effort": item.effort, "state": item.state,
            "score_override": item.score_override, "source": item.source, "fingerprint": fp,
            "created_at": now, "updated_at": now,
        }
        row["score"] = self._score(row)
        item_id = self.store.insert("backlog", row)
        self.store.append_event("backlog.added", id=item_id, title=item.title, track=item.track,
                                source=item.source)
        return int(item_id), True

    def set_score(self, item_id: int, score: float | None) -> None:
        """Pin (or with ``None`` unpin) an item's score."""
        self.get(item_id)
        self.store.update("backlog", item_id, score_override=score, updated_at=self.now())

    def set_state(self, item_id: int, state: str, *, mission_id: int | None = None) -> None:
        if state not in STATES:
            raise BacklogError(f"state: {state!r} is not one of {', '.join(STATES)}")
        self.get(item_id)
        fields: dict[str, Any] = {"state": state, "updated_at": self.now()}
        if mission_id is not None:
            fields["mission_id"] = mission_id
        self.store.update("backlog", item_id, **fields)
        self.store.append_event("backlog.state", mission_id=mission_id, id=item_id, state=state)

    def recalc(self) -> int:
        """Recompute every stored score (age moves on); returns how many items changed."""
        changed = 0
        for row in self.store.rows("backlog"):
            score = self._score(row)
            if score != row["score"]:
                self.store.update("backlog", row["id"], score=score)
                changed += 1
        return changed

    # ------------------------------------------------------------------ markdown
    def export_markdown(self, states: Iterable[str] | None = ACTIVE) -> str:
        """The backlog as Markdown, one item per line (the format of the module docstring)."""
        lines = ["# Backlog", "",
                 "<!-- mc priority export: - [box] title | key=value ... | evidence: text -->", ""]
        for row in self.items(states):
            pairs = f"track={row['track']} impact={row['impact']} effort={row['effort']} id={row['id']}"
            if row["score_override"] is not None:
                pairs += f" score={row['score_override']:g}"
            evidence = " ".join(row["evidence"].split())
            tail = f" | evidence: {evidence}" if evidence else ""
            lines.append(f"- [{_BOX_OF[row['state']]}] {row['title'].replace('|', '/')} | {pairs}{tail}")
        return "\n".join(lines) + "\n"

    def import_markdown(self, text: str) -> tuple[int, int]:
        """Add or update every item line of ``text``; returns (created, updated).

        All lines are parsed before anything is written: a bad line raises
        :class:`BacklogError` naming its line number and nothing is imported.
        """
        items = parse_markdown(text)
        created = updated = 0
        for item in items:
            _, new = self.add(item)
            created += new
            updated += not new
        return created, updated


def parse_markdown(text: str) -> list[BacklogItem]:
    """The item lines of a Markdown backlog (see the module docstring)."""
    items = []
    for number, line in enumerate(text.splitlines(), 1):
        match = _LINE.match(line)
        if not match:
            continue
        parts = [p.strip() for p in match["rest"].split(" | ", 2)]
        item = BacklogItem(title=parts[0], state=_BOX[match["box"]], source="import")
        try:
            for part in parts[1:]:
                if part.lower().startswith("evidence:"):
                    item.evidence = part.split(":", 1)[1].strip()
                    continue
                for pair in part.split():
                    key, sep, value = pair.partition("=")
                    if not sep:
                        raise BacklogError(f"{pair!r} is not key=value")
                    if key in ("impact", "effort", "id"):
                        setattr(item, key, _int(key, value))
                    elif key == "track":
                        item.track = value
                    elif key == "score":
                        item.score_override = float(value)
                    else:
                        raise BacklogError(f"unknown key {key!r} (track, impact, effort, id, score)")
            item.validate()
        except (BacklogError, ValueError) as exc:
            raise BacklogError(f"line {number}: {exc}") from None
        items.append(item)
    return items


def _int(key: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise BacklogError(f"{key}: must be an integer, got {value!r}") from None
