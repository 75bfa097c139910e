"""The typed context store: discoveries, gotchas and conventions workers report in their
result marker (``unit.context`` events), stored with a scope and shown to later workers
whose files fall in it.

A row of ``context_items``::

    id TEXT            sha1 of kind + normalised text (the de-duplication key)
    kind TEXT          discovery | gotcha | convention
    text TEXT          what the worker said (whitespace collapsed)
    paths TEXT         JSON list: the scope's paths, directories ("src/api/") or globs
    unit_ids TEXT      JSON list: the units that reported it
    roots TEXT         JSON list: the top-level plan units (subtrees) they belong to
    mission_id INT     the mission that first reported it
    seen INT           how many reports were merged into it
    first_event INT    the ``unit.context`` event that created it
    created_at REAL, updated_at REAL

Scope: the paths the worker named (``{"text": ..., "paths": [...]}``), else the files the
unit changed, else its ``files_hint``. A unit is in scope when one of its files equals a
scope path, lies under it (a directory), matches it as a glob, or sits in the same
directory as a scope file; or when it belongs to the same plan subtree (same top-level
unit) of the same mission. De-duplication: the same kind and text (case and whitespace
ignored) is one item; a repeat adds its paths, unit and subtree and counts ``seen``.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import posixpath
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.store import Store

TABLE = "context_items"
CURSOR_TABLE = "context_cursor"
KINDS = {"discoveries": "discovery", "gotchas": "gotcha", "conventions": "convention"}
KIND_ORDER = {"convention": 0, "gotcha": 1, "discovery": 2}


def ensure_schema(store: Store) -> None:
    db = store.db
    with store.transaction():
        if TABLE not in db.table_names():
            db[TABLE].create(
                {"id": str, "kind": str, "text": str, "paths": str, "unit_ids": str,
                 "roots": str, "mission_id": int, "seen": int, "first_event": int,
                 "created_at": float, "updated_at": float},
                pk="id", not_null={"kind", "text", "paths", "unit_ids", "roots", "seen"},
            )
        if CURSOR_TABLE not in db.table_names():
            db[CURSOR_TABLE].create({"id": int, "last_event": int}, pk="id")
            db[CURSOR_TABLE].insert({"id": 1, "last_event": 0})


def item_key(kind: str, text: str) -> str:
    norm = " ".join(text.lower().split())
    return hashlib.sha1(f"{kind}\0{norm}".encode()).hexdigest()[:16]


def root_of(store: Store, unit_id: str | None) -> str | None:
    """The top-level plan unit above ``unit_id`` (itself when it has no parent)."""
    seen = 0
    while unit_id and seen < 20:
        row = store.query("SELECT parent_id FROM units WHERE id = ?", (unit_id,))
        if not row or not row[0]["parent_id"]:
            return unit_id
        unit_id, seen = row[0]["parent_id"], seen + 1
    return unit_id


def ingest(store: Store) -> int:
    """Store the items of every ``unit.context`` event not yet taken in (idempotent:
    a cursor holds the last event handled). Returns how many reports were merged."""
    ensure_schema(store)
    merged = 0
    with store.transaction():
        last = store.query(f"SELECT last_event FROM {CURSOR_TABLE} WHERE id = 1")[0]["last_event"]
        events = store.query(
            "SELECT id, mission_id, unit_id, payload FROM events WHERE kind = 'unit.context' "
            "AND id > ? ORDER BY id", (last,))
        for event in events:
            payload = json.loads(event["payload"] or "{}")
            unit = store.get("units", event["unit_id"]) if event["unit_id"] else None
            default = list(payload.get("files_changed") or []) or list(
                (unit or {}).get("files_hint") or [])
            root = root_of(store, event["unit_id"])
            for item in payload.get("items") or []:
                kind = KINDS.get(item.get("kind"), item.get("kind"))
                if kind not in KIND_ORDER or not str(item.get("text") or "").strip():
                    continue
                add(store, kind=kind, text=str(item["text"]),
                    paths=list(item.get("paths") or []) or default, unit_id=event["unit_id"],
                    root=root, mission_id=event["mission_id"], event_id=event["id"])
                merged += 1
            last = event["id"]
        store.conn.execute(f"UPDATE {CURSOR_TABLE} SET last_event = ? WHERE id = 1", (last,))
    return merged


def add(store: Store, *, kind: str, text: str, paths: list[str], unit_id: str | None,
        root: str | None, mission_id: int | None, event_id: int = 0) -> dict[str, Any]:
    """Insert one item or merge it into the existing one with the same kind and text."""
    ensure_schema(store)
    text = store._clean(" ".join(text.split()))
    key = item_key(kind, text)
    now = time.time()
    with store.transaction():
        old = store.get(TABLE, key)
        if old is None:
            row = {"id": key, "kind": kind, "text": text, "paths": json.dumps(sorted(set(paths))),
                   "unit_ids": json.dumps([unit_id] if unit_id else []),
                   "roots": json.dumps([root] if root else []), "mission_id": mission_id,
                   "seen": 1, "first_event": event_id, "created_at": now, "updated_at": now}
            store.db[TABLE].insert(row)
            return row
        units = json.loads(old["unit_ids"])
        roots = json.loads(old["roots"])
        fields = {
            "paths": json.dumps(sorted(set(json.loads(old["paths"])) | set(paths))),
            "unit_ids": json.dumps(units + [unit_id] if unit_id and unit_id not in units
                                   else units),
            "roots": json.dumps(roots + [root] if root and root not in roots else roots),
            "seen": old["seen"] + 1, "updated_at": now,
        }
        store.update(TABLE, key, **fields)
        return {**old, **fields}


def in_scope(files: list[str], paths: list[str]) -> bool:
    """Whether any of ``files`` falls in the scope ``paths`` (see the module docstring)."""
    for scope in paths:
        scope = scope.strip()
        scope = scope[2:] if scope.startswith("./") else scope
        if not scope:
            continue
        if scope in ("*", "**", "/"):
            return True
        is_glob = any(c in scope for c in "*?[")
        for f in files:
            f = f.strip().lstrip("/")
            if is_glob:
                if fnmatch.fnmatchcase(f, scope) or fnmatch.fnmatchcase(posixpath.basename(f), scope):
                    return True
                continue
            bare = scope.rstrip("/")
            if f == bare or f.startswith(bare + "/") or bare.startswith(f.rstrip("/") + "/"):
                return True
            if not scope.endswith("/") and posixpath.dirname(f) == posixpath.dirname(bare):
                return True
    return False


def for_unit(store: Store, unit: dict[str, Any]) -> list[dict[str, Any]]:
    """The items in scope of ``unit`` (its files_hint, or its plan subtree in its mission):
    conventions, then gotchas, then discoveries; the most often reported first."""
    if TABLE not in store.db.table_names():
        return []
    files = unit.get("files_hint") or []
    files = [files] if isinstance(files, str) else [str(f) for f in files]
    root = root_of(store, unit.get("id")) if unit.get("id") else None
    out = []
    for row in store.query(f"SELECT * FROM {TABLE}"):
        same_subtree = (root is not None and row["mission_id"] == unit.get("mission_id")
                        and root in json.loads(row["roots"])
                        and unit.get("id") not in json.loads(row["unit_ids"]))
        if same_subtree or in_scope(files, json.loads(row["paths"])):
            out.append(row)
    out.sort(key=lambda r: (KIND_ORDER[r["kind"]], -r["seen"], r["created_at"]))
    return out


def note(row: dict[str, Any]) -> str:
    """The prompt line of one item."""
    paths = json.loads(row["paths"])
    where = f" ({', '.join(paths[:4])}{', ...' if len(paths) > 4 else ''})" if paths else ""
    return f"{row['kind']}{where}: {row['text']}"
