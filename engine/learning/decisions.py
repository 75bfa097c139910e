"""The decisions each unit's outcome followed, and that outcome (table ``decisions``).

One row per leaf unit, written at its first agent session (``record``) and settled when the
unit is final (``settle``): used by prompt evolution (the variant's samples) and causal
attribution (effect estimates per decision).

Factors (all strings, so they stratify): ``specialist``, ``model``, ``two_pass`` (yes/no),
``depth`` (the unit's depth in the plan tree, 1 = a top-level unit), ``prompt_variant``,
``overlap`` (does the unit share a file hint with a sibling: yes/no), ``size`` (its file
hints: 0, 1, 2-3, 4+).

Success: the unit merged without a fixup round and its review score (when it has one)
reached ``[review] min_review_score``.
"""

from __future__ import annotations

import json
import time
from typing import Any

from engine.models import UnitStatus
from engine.store import Store

FACTORS = ("specialist", "model", "two_pass", "depth", "prompt_variant", "overlap", "size")


def size_band(files: list[str] | None) -> str:
    n = len(files or [])
    return "0" if n == 0 else "1" if n == 1 else "2-3" if n <= 3 else "4+"


def depth_of(store: Store, unit: dict[str, Any]) -> int:
    depth, parent, seen = 1, unit.get("parent_id"), set()
    while parent and parent not in seen:
        seen.add(parent)
        row = store.get("units", parent)
        if row is None:
            break
        depth += 1
        parent = row.get("parent_id")
    return depth


def overlaps_sibling(store: Store, unit: dict[str, Any]) -> bool:
    files = set(unit.get("files_hint") or [])
    if not files:
        return False
    if unit.get("parent_id"):
        siblings = store.rows("units", "parent_id = ? AND id != ?", (unit["parent_id"], unit["id"]))
    else:
        siblings = store.rows("units", "epoch_id IS ? AND parent_id IS NULL AND id != ?",
                              (unit.get("epoch_id"), unit["id"]))
    return any(files & set(s.get("files_hint") or []) for s in siblings)


def record(store: Store, unit: dict[str, Any], *, model: str, two_pass: bool,
           prompt_variant: str | None = None, prompt_variant_id: int | None = None) -> None:
    """Write the unit's decisions at its first session (later sessions keep the first row,
    except that a prompt variant chosen later fills an empty one)."""
    if not unit.get("id") or not unit.get("mission_id"):
        return
    existing = next(iter(store.rows("decisions", "unit_id = ?", (unit["id"],), order="unit_id")),
                    None)
    if existing is not None:
        if prompt_variant_id is not None and existing["prompt_variant_id"] is None:
            factors = {**existing["factors"], "prompt_variant": prompt_variant or "shipped"}
            with store.transaction() as conn:
                conn.execute("UPDATE decisions SET factors = ?, prompt_variant_id = ? "
                             "WHERE unit_id = ?", (json.dumps(factors), prompt_variant_id, unit["id"]))
        return
    factors = {
        "specialist": str(unit.get("specialist") or "general"),
        "model": model,
        "two_pass": "yes" if two_pass else "no",
        "depth": str(depth_of(store, unit)),
        "prompt_variant": prompt_variant or "shipped",
        "overlap": "yes" if overlaps_sibling(store, unit) else "no",
        "size": size_band(unit.get("files_hint")),
    }
    store.insert("decisions", {"unit_id": unit["id"], "mission_id": unit["mission_id"],
                               "factors": factors, "prompt_variant_id": prompt_variant_id,
                               "created_at": time.time()})


def success_of(unit: dict[str, Any], min_review_score: float) -> bool:
    """Merged, no fixup round, and a passing review score (when reviewed)."""
    score = unit.get("review_score")
    return (unit["status"] == UnitStatus.MERGED and not unit.get("fixup_rounds")
            and (score is None or score >= min_review_score))


def settle(store: Store, mission_id: int, min_review_score: float) -> list[dict[str, Any]]:
    """Give each unsettled decision row whose unit is final (merged, failed, blocked) its
    success, and count it on its prompt variant. Idempotent; returns the rows settled."""
    final = (UnitStatus.MERGED, UnitStatus.FAILED, UnitStatus.BLOCKED)
    settled = []
    for row in store.rows("decisions", "mission_id = ? AND success IS NULL", (mission_id,),
                          order="unit_id"):
        unit = store.get("units", row["unit_id"])
        if unit is None or unit["status"] not in final:
            continue
        ok = success_of(unit, min_review_score)
        with store.transaction() as conn:
            cur = conn.execute("UPDATE decisions SET success = ? WHERE unit_id = ? AND success IS NULL",
                               (int(ok), row["unit_id"]))
            if cur.rowcount and row["prompt_variant_id"] is not None:
                column = "successes" if ok else "failures"
                conn.execute(f"UPDATE prompt_variants SET {column} = {column} + 1 WHERE id = ?",
                             (row["prompt_variant_id"],))
        if cur.rowcount:
            settled.append({**row, "success": int(ok)})
    return settled
