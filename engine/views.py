"""How a mission's events read to a person, and which rows they touch: the view logic the
TUI (``mc_tui/widgets/mission_state.py``, ``event_log.py``) and the live dashboard
(``engine/services/live/snapshot.py``) share, so the two cannot tell a mission differently.

Plain functions of :class:`~engine.models.Event` (no Textual, no HTTP): an event as a row
read back from ``events``, the one-line detail of an event, the log line of an agent's
event (``agent.event`` payloads), and the rows an event names (what a view re-reads by id).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.models import Event

# event kind prefix -> the table whose row the payload's "id" names
TABLE_OF_KIND: dict[str, str] = {
    "mission": "missions",
    "epoch": "epochs",
    "unit": "units",
    "merge": "merges",
    "verification": "verifications",
    "approval": "approvals",
    "attempt": "attempts",
}
# events that change the mission's summary (counts, epoch, spend) without naming its row
MISSION_KINDS = frozenset({"green.promoted", "epoch.created", "epoch.status", "cost"})
# events about a unit (``unit_id``) that change its row without naming it in ``id``
UNIT_KINDS = frozenset({"cost", "review.scored", "attempt.finished", "attempt.started"})
_SKIP = frozenset({"id", "mission_id"})


def event_from_row(row: Mapping[str, Any]) -> Event:
    """An ``events`` row (``id, ts, kind, mission_id, unit_id, payload`` as JSON text)."""
    payload = row.get("payload")
    return Event(id=row["id"], ts=row["ts"], kind=row["kind"], mission_id=row["mission_id"],
                 unit_id=row["unit_id"], payload=json.loads(payload) if payload else {})


def event_detail(event: Event) -> str:
    """The event in one line, without its kind or time: ``<id> <from> → <to> (<reason>)``
    for a status change, ``[<level>] <message>`` for a log line, ``<role> <model> $<usd>``
    for a cost, else ``<id> key=value ...`` (empty values left out). Not clipped."""
    p = event.payload
    if event.kind.endswith(".status") and "to" in p:
        detail = f"{p.get('id', '')} {p.get('from')} → {p.get('to')}"
        if p.get("reason"):
            detail += f" ({p['reason']})"
    elif event.kind == "log":
        detail = f"[{p.get('level', 'info')}] {p.get('message', '')}"
    elif event.kind == "cost":
        detail = f"{p.get('role')} {p.get('model') or ''} ${float(p.get('usd') or 0):.3f}"
    else:
        detail = " ".join(f"{k}={v}" for k, v in p.items() if k not in _SKIP and v not in (None, ""))
        if "id" in p:
            detail = f"{p['id']} {detail}"
    return detail


def agent_line(payload: Mapping[str, Any], width: int = 160) -> str:
    """One log line for an ``agent.event`` payload, at most ``width`` characters: a tool call
    ``▶ tool: first line``, a tool result folded to ``↳ first line (+n lines)``, thinking,
    retries and notices marked, usage, else the text's first line."""
    kind = payload.get("type", "text")
    text = str(payload.get("text") or "")
    first, _, rest = text.strip().partition("\n")
    more = rest.count("\n") + 1 if rest else 0
    if kind == "tool_use":
        line = f"▶ {payload.get('tool') or 'tool'}: {first}"
    elif kind == "tool_result":
        line = f"  ↳ {first}" + (f"  (+{more} lines)" if more else "")
    elif kind == "thinking":
        line = f"… {first}"
    elif kind in ("retry", "rate_limit", "notice"):
        line = f"! {kind}: {first}"
    elif kind == "usage":
        line = f"· usage {first}"
    else:
        line = first if not more else f"{first}  (+{more} lines)"
    return line if len(line) <= width else line[: width - 1] + "…"


@dataclass(frozen=True)
class Touched:
    """What a view must re-read after an event: rows by ``(table, id)``, and whether the
    mission's own row (status, spend, counts) changed."""

    rows: tuple[tuple[str, Any], ...] = ()
    mission: bool = False


def touched(event: Event) -> Touched:
    """The rows ``event`` names (an agent's event names its attempt)."""
    kind, payload = event.kind, event.payload
    if kind == "agent.event":
        attempt = payload.get("attempt_id")
        return Touched(rows=(("attempts", attempt),) if attempt is not None else ())
    rows: list[tuple[str, Any]] = []
    table = TABLE_OF_KIND.get(kind.partition(".")[0])
    if table == "attempts":
        attempt = payload.get("attempt_id", payload.get("id"))
        if attempt is not None:
            rows.append(("attempts", attempt))
    elif table is not None and table != "missions" and payload.get("id") is not None:
        rows.append((table, payload["id"]))
    if kind in UNIT_KINDS and event.unit_id:
        rows.append(("units", event.unit_id))
    return Touched(rows=tuple(rows), mission=table == "missions" or kind in MISSION_KINDS)
