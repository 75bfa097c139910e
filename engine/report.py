"""The post-mission report: one JSON document built from the store."""

from __future__ import annotations

import json
import time
from typing import Any

from engine.learning.attribution import report as attribution_report
from engine.store import Store


def build_report(store: Store, mission_id: int) -> dict[str, Any]:
    mission = store.get("missions", mission_id)
    if mission is None:
        raise KeyError(f"mission {mission_id} does not exist")
    units = store.units(mission_id)
    merges = store.rows("merges", "mission_id = ?", (mission_id,))
    verifications = store.rows("verifications", "mission_id = ?", (mission_id,))
    epochs = store.rows("epochs", "mission_id = ?", (mission_id,), order="number")
    costs = store.query(
        "SELECT model, role, SUM(usd) AS usd, SUM(estimated) AS estimated_rows, COUNT(*) AS calls "
        "FROM costs WHERE mission_id = ? GROUP BY model, role ORDER BY usd DESC", (mission_id,),
    )
    attempts = store.rows("attempts", "mission_id = ?", (mission_id,))
    approvals = store.rows("approvals", "mission_id = ?", (mission_id,))
    last_reason: dict[str, str | None] = {}
    for a in attempts:  # ordered by id: the latest attempt of each unit wins
        if a["unit_id"]:
            last_reason[a["unit_id"]] = a["failure_reason"]
    denials = [
        {"unit_id": e.unit_id, "attempt_id": e.payload.get("attempt_id"),
         "denials": e.payload["denials"]}
        for e in store.events_after(0, mission_id)
        if e.kind == "log" and isinstance(e.payload.get("denials"), list)
    ]
    ended = mission["ended_at"] or time.time()
    return {
        "mission": {
            "id": mission_id,
            "objective": mission["objective"],
            "status": mission["status"],
            "outcome": mission["outcome"],
            "started_at": mission["started_at"],
            "ended_at": mission["ended_at"],
            "duration_s": round(mission["active_s"] or (ended - mission["started_at"]), 3),
            "total_cost_usd": round(mission["total_cost_usd"], 6),
            "parent_mission_id": mission["parent_mission_id"],
        },
        "epochs": [
            {k: e[k] for k in ("number", "status", "plan_score", "summary", "started_at", "ended_at")}
            for e in epochs
        ],
        "units": [
            {
                k: u[k]
                for k in ("id", "parent_id", "title", "specialist", "status", "reason", "is_leaf",
                          "attempt_count", "review_score", "reward", "cost_usd", "head_commit",
                          "acceptance_criteria", "dependencies")
            } | {"failure_reason": last_reason.get(u["id"])}
            for u in units
        ],
        # Tool calls the agent CLI refused (permissions), per unit attempt.
        "denials": denials,
        "merges": [
            {k: m[k] for k in ("id", "unit_id", "branch", "status", "head_commit",
                               "candidate_commit", "conflict_paths", "reason")}
            for m in merges
        ],
        "verifications": [
            {k: v[k] for k in ("id", "commit_sha", "status", "exit_code", "duration_s",
                               "failing_tests", "accepted", "note")}
            for v in verifications
        ],
        "baseline": baseline_facts(store, mission_id),
        "flaky_tests": flaky_tests(store, mission_id),
        "push": push_facts(store, mission_id),
        "speculation": speculation_facts(store, mission_id),
        # decisions -> outcomes over every mission of the store (engine/learning/attribution.py)
        "attribution": attribution_report(store),
        "approvals": [
            {k: a[k] for k in ("id", "gate", "title", "status", "decided_by")} for a in approvals
        ],
        "cost": {
            "total_usd": round(mission["total_cost_usd"], 6),
            "by_model_role": costs,
            "attempts": len(attempts),
            "tokens": {
                "input": sum(a["input_tokens"] for a in attempts),
                "output": sum(a["output_tokens"] for a in attempts),
                "cache_read": sum(a["cache_read_tokens"] for a in attempts),
                "cache_write": sum(a["cache_write_tokens"] for a in attempts),
            },
        },
        "timings": {
            "verification_s": round(sum(v["duration_s"] or 0 for v in verifications), 3),
            "agent_s": round(sum((a["ended_at"] or a["started_at"]) - a["started_at"] for a in attempts), 3),
        },
    }


def _payloads(store: Store, mission_id: int, kind: str) -> list[dict[str, Any]]:
    rows = store.query("SELECT payload FROM events WHERE mission_id = ? AND kind = ? ORDER BY id",
                       (mission_id, kind))
    return [json.loads(r["payload"]) for r in rows]


def speculation_facts(store: Store, mission_id: int) -> list[dict[str, Any]]:
    """One entry per unit attempt worked by speculation branches (engine/speculation.py):
    ``unit_id``, ``attempt``, ``selection``, ``winner`` (branch number; None: no branch had
    work), ``losers``, ``cost_usd`` (the agent sessions of all branches)."""
    rows = store.query("SELECT unit_id, payload FROM events WHERE mission_id = ? AND kind = "
                       "'speculation.winner' ORDER BY id", (mission_id,))
    out = []
    for row in rows:
        p = json.loads(row["payload"])
        out.append({"unit_id": row["unit_id"], "attempt": p.get("attempt"),
                    "selection": p.get("selection"), "winner": p.get("branch"),
                    "losers": p.get("losers") or [], "cost_usd": p.get("cost_usd")})
    return out


def baseline_facts(store: Store, mission_id: int) -> dict[str, Any] | None:
    """The verification of mc/green before any change: ``commit``, ``status``, ``exit_code``,
    ``failing_tests`` (None: not readable), ``summary``, ``unverifiable_merges`` (merges
    accepted without a verdict because the baseline was red); None if it never ran."""
    recorded = _payloads(store, mission_id, "baseline.recorded")
    if not recorded:
        return None
    last = recorded[-1]
    unverifiable = store.query(
        "SELECT COUNT(*) AS n FROM merges WHERE mission_id = ? AND status = 'promoted' AND "
        "reason LIKE 'not verifiable%'", (mission_id,))[0]["n"]
    return {"commit": last.get("commit"), "status": last.get("status"),
            "exit_code": last.get("exit_code"), "failing_tests": last.get("failing"),
            "summary": last.get("summary"), "unverifiable_merges": int(unverifiable)}


def flaky_tests(store: Store, mission_id: int) -> list[str]:
    """Tests that failed and then passed on a re-run of the same commit (sorted, unique);
    ``"(unnamed)"`` stands for a flaky run whose output named no tests."""
    names: set[str] = set()
    for event in _payloads(store, mission_id, "verification.flaky"):
        names.update(event.get("tests") or ["(unnamed)"])
    return sorted(names)


def push_facts(store: Store, mission_id: int) -> dict[str, Any] | None:
    """The last push of the mission: ``ok``, ``rejected``, ``reason``, ``commit``,
    ``attempts``; None when it never tried to push."""
    pushes = _payloads(store, mission_id, "push.result")
    if not pushes:
        return None
    last = pushes[-1]
    return {"ok": bool(last.get("ok")), "rejected": bool(last.get("rejected")),
            "reason": last.get("reason") or ("" if last.get("ok") else last.get("output", "")),
            "commit": last.get("commit"), "remote": last.get("remote"),
            "branch": last.get("branch"), "attempts": len(pushes)}
