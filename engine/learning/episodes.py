"""Episodic memory: one episode per finished unit and per finished mission, recalled by
full-text search (SQLite FTS5, BM25 ranking, through sqlite-utils).

An episode row (table ``episodes``)::

    id TEXT            "unit:<unit id>" or "mission:<mission id>" (re-recording replaces it)
    kind TEXT          "unit" | "mission"
    mission_id INT     the mission it happened in
    unit_id TEXT       the unit (None for a mission episode)
    objective TEXT     the mission's objective
    title TEXT         the unit's title (the objective again for a mission episode)
    files TEXT         the unit's files, space separated ("" for a mission)
    outcome TEXT       merged | failed | blocked | completed | stopped | ... (a status)
    failure_reason TEXT  why it failed (the unit's or mission's reason), "" when it did not
    review_feedback TEXT the reviewer's last feedback, ""
    fixups TEXT        fixup history ("2 fixup round(s), 1 review rejection(s), 3 attempt(s)")
    cost_usd REAL      what it cost (agent sessions of the unit, or the whole mission)
    lesson TEXT        the one-line summary that enters prompts
    created_at REAL    unix seconds

The FTS5 index (``episodes_fts``, kept in sync by triggers) covers objective, title, files,
failure_reason, review_feedback and lesson. The table is created on first use rather than by
a store migration: it belongs to this plugin, and a store without it simply has no memory.

Scoring (see ``docs/learning.md``): for a query with terms Q, FTS5 returns every episode
matching any term with its BM25 score ``s`` (``-rank``, larger is better). An episode's
relevance in 0..1 is ``(s / s_best) * coverage`` where ``s_best`` is the best score of the
result set and ``coverage = |Q ∩ E| / min(|Q|, |E|)`` (the overlap coefficient of the query's
terms Q and the episode's terms E); when ``s_best`` is ~0 (FTS5 clamps
the IDF of a term found in half the rows or more, which is the normal case while the memory
holds a handful of episodes) the BM25 factor is 1. Its score is ``relevance *
0.5 ** (age_days / half_life_days)``; episodes scoring below ``similarity_threshold`` are
dropped, the rest enter the prompt best first until the token budget (4 characters a token)
is spent. At most ``max_episodes`` episodes are kept: recording one more deletes the oldest.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.store import Store

TABLE = "episodes"
FTS_COLUMNS = ("objective", "title", "files", "failure_reason", "review_feedback", "lesson")
CHARS_PER_TOKEN = 4
MAX_QUERY_TERMS = 32
MIN_BM25 = 1e-3  # below this the best BM25 score carries no information (clamped IDF)
LESSON_CHARS = 480
_STOPWORDS = (
    "the and for with from into that this then than are was were will not but all any can "
    "its has have had you your our use used using add make each per via out off one two new "
    "when what which who how why should must may also only more most some such"
)
STOPWORDS = frozenset(_STOPWORDS.split())
_WORD = re.compile(r"[a-z0-9_]+")


@dataclass(frozen=True)
class Recalled:
    """One recalled episode: the row, its relevance (0..1, before decay) and its score."""

    episode: dict[str, Any]
    relevance: float
    score: float

    @property
    def lesson(self) -> str:
        return str(self.episode["lesson"])


def terms(text: str) -> list[str]:
    """The search terms of ``text``: lower-case words of 3+ characters, stopwords dropped,
    first occurrence order, at most :data:`MAX_QUERY_TERMS`."""
    seen: dict[str, None] = {}
    for word in _WORD.findall(text.lower()):
        if len(word) > 2 and word not in STOPWORDS:
            seen.setdefault(word, None)
    return list(seen)[:MAX_QUERY_TERMS]


def ensure_schema(store: Store) -> None:
    """Create ``episodes`` and its FTS5 index (with sync triggers) if they are missing
    (a store holding both is only read, so a read-only connection can recall)."""
    db = store.db
    if TABLE in db.table_names() and db[TABLE].detect_fts():
        return
    with store.transaction():
        if TABLE not in db.table_names():
            db[TABLE].create(
                {"id": str, "kind": str, "mission_id": int, "unit_id": str, "objective": str,
                 "title": str, "files": str, "outcome": str, "failure_reason": str,
                 "review_feedback": str, "fixups": str, "cost_usd": float, "lesson": str,
                 "created_at": float},
                pk="id", not_null={"kind", "objective", "title", "outcome", "lesson",
                                   "created_at"},
            )
            db[TABLE].create_index(["created_at"])
        if not db[TABLE].detect_fts():
            db[TABLE].enable_fts(list(FTS_COLUMNS), create_triggers=True,
                                 tokenize="porter unicode61")


def lesson_text(outcome: str, title: str, files: list[str], failure_reason: str,
                review_feedback: str, fixups: str) -> str:
    """The one line an episode contributes to a prompt."""
    parts = [f"[{outcome}] {title}"]
    if files:
        parts.append(f"(files: {', '.join(files[:6])})")
    if failure_reason:
        parts.append(f"failed because: {failure_reason}")
    if review_feedback:
        parts.append(f"review said: {review_feedback}")
    if fixups:
        parts.append(f"({fixups})")
    text = " ".join(" ".join(parts).split())
    return text if len(text) <= LESSON_CHARS else text[: LESSON_CHARS - 3] + "..."


def record(store: Store, *, kind: str, key: str, mission_id: int, unit_id: str | None,
           objective: str, title: str, files: list[str], outcome: str, failure_reason: str,
           review_feedback: str, fixups: str, cost_usd: float, max_episodes: int,
           now: float | None = None) -> dict[str, Any]:
    """Write (or replace) the episode ``<kind>:<key>`` and prune to ``max_episodes``
    (oldest first). Returns the row."""
    ensure_schema(store)
    row = {
        "id": f"{kind}:{key}", "kind": kind, "mission_id": mission_id, "unit_id": unit_id,
        "objective": objective, "title": title, "files": " ".join(files), "outcome": outcome,
        "failure_reason": failure_reason or "", "review_feedback": review_feedback or "",
        "fixups": fixups, "cost_usd": round(float(cost_usd or 0.0), 6),
        "lesson": lesson_text(outcome, title, files, failure_reason or "",
                              review_feedback or "", fixups),
        "created_at": time.time() if now is None else now,
    }
    row = {k: store._clean(v) if isinstance(v, str) else v for k, v in row.items()}
    with store.transaction():
        store.db[TABLE].upsert(row, pk="id")
        store.conn.execute(
            f"DELETE FROM {TABLE} WHERE id IN (SELECT id FROM {TABLE} "
            "ORDER BY created_at DESC, id DESC LIMIT -1 OFFSET ?)", (max_episodes,))
    return row


def recall(store: Store, query: str, *, threshold: float, half_life_days: float,
           limit: int = 50, exclude_mission: int | None = None,
           now: float | None = None) -> list[Recalled]:
    """Episodes relevant to ``query``, best score first (see the module docstring)."""
    words = terms(query)
    if not words or TABLE not in store.db.table_names():
        return []
    ensure_schema(store)
    fts_query = " OR ".join(f'"{w}"' for w in words)
    where, args = None, None
    if exclude_mission is not None:
        where, args = "mission_id IS NOT :exclude", {"exclude": exclude_mission}
    with store._lock:
        hits = list(store.db[TABLE].search(fts_query, include_rank=True, limit=limit,
                                           where=where, where_args=args))
    if not hits:
        return []
    scores = [-float(h["rank"]) for h in hits]
    best = max(scores)
    now = time.time() if now is None else now
    query_terms = set(words)
    out: list[Recalled] = []
    for hit, s in zip(hits, scores, strict=True):
        hit.pop("rank", None)
        bm25 = s / best if best > MIN_BM25 else 1.0
        have = set(terms(" ".join(str(hit[c] or "") for c in FTS_COLUMNS)))
        # porter stemming matches "headers" to "header": count a term present if its stem is
        shared = sum(1 for w in query_terms if w in have or _stem_in(w, have))
        coverage = shared / max(1, min(len(query_terms), len(have)))
        relevance = max(0.0, min(1.0, bm25 * coverage))
        age_days = max(0.0, now - float(hit["created_at"])) / 86400.0
        score = relevance * 0.5 ** (age_days / half_life_days) if half_life_days > 0 else relevance
        if score >= threshold and score > 0:
            out.append(Recalled(hit, round(relevance, 4), round(score, 4)))
    out.sort(key=lambda r: (-r.score, -float(r.episode["created_at"])))
    return out


def _stem_in(word: str, have: set[str]) -> bool:
    """Crude plural/suffix match standing in for the porter stemmer the index uses."""
    for suffix in ("ing", "es", "ed", "s"):
        if word.endswith(suffix) and word[: -len(suffix)] in have:
            return True
    return any(w.startswith(word) or word.startswith(w) for w in have if min(len(w), len(word)) > 4)


def within_budget(lines: list[str], tokens: int) -> list[str]:
    """The leading ``lines`` whose total size stays within ``tokens`` (4 chars a token)."""
    budget = tokens * CHARS_PER_TOKEN
    kept: list[str] = []
    for line in lines:
        cost = len(line) + 3  # "- " and the newline
        if cost > budget:
            break
        kept.append(line)
        budget -= cost
    return kept


def list_episodes(store: Store, limit: int = 50) -> list[dict[str, Any]]:
    """The newest episodes first."""
    if TABLE not in store.db.table_names():
        return []
    return store.query(f"SELECT * FROM {TABLE} ORDER BY created_at DESC, id DESC LIMIT ?",
                       (limit,))


def forget(store: Store, episode_id: str | None = None) -> int:
    """Delete one episode (by id) or, with None, all of them. Returns how many went."""
    if TABLE not in store.db.table_names():
        return 0
    ensure_schema(store)
    with store.transaction() as conn:
        if episode_id is None:
            cur = conn.execute(f"DELETE FROM {TABLE}")
        else:
            cur = conn.execute(f"DELETE FROM {TABLE} WHERE id = ?", (episode_id,))
    return int(cur.rowcount or 0)


def dumps(row: dict[str, Any]) -> str:
    return json.dumps(row, default=str)
