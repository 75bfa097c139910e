"""Choosing the next objective of a chained mission from the backlog.

The strategist sees the open backlog (best first) and either takes an item (``backlog_id``)
or proposes something else; it may add items (``new_items``). When its answer is unusable
(no JSON object with ``next_objective``) and the backlog has open items, the best item is
taken as it is; an explicit empty objective ("nothing worthwhile remains") ends the chain. The item taken is
marked ``in_progress`` and recorded in the ``strategy.proposed`` event; when the chained
mission ends, :func:`settle` marks it ``done`` (completed) or reopens it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.strategy.backlog import TRACKS, Backlog, BacklogError, BacklogItem
from engine.strategy.strategist import StrategyProposal, propose

if TYPE_CHECKING:
    from engine.planning.ask import Ask
    from engine.store import Store

BACKLOG_SHOWN = 15


def backlog_lines_short(rows: list[dict[str, Any]]) -> list[str]:
    """``#id [track] title`` per row."""
    return [f"#{r['id']} [{r['track']}] {r['title']}" for r in rows]


def item_objective(row: dict[str, Any]) -> str:
    """A backlog item as an objective: its title, then its evidence."""
    evidence = str(row.get("evidence") or "").strip()
    return row["title"] + (f"\n\nEvidence:\n{evidence}" if evidence else "")


async def next_objective(
    ask: Ask, backlog: Backlog, *, mission_id: int, objective: str, outcome: str,
    merged: list[str], failed: list[str],
) -> StrategyProposal | None:
    """Ask the strategist with the open backlog; record its new items, mark the item it takes
    ``in_progress``; fall back to the best open item. ``None``: nothing to do next."""
    shown = backlog.next_open(BACKLOG_SHOWN)
    proposal = await propose(ask, objective=objective, outcome=outcome, merged=merged,
                             failed=failed, backlog=shown)
    for raw in (proposal.new_items if proposal else [])[:10]:
        try:
            backlog.add(BacklogItem(
                title=str(raw["title"]), track=str(raw.get("track") or "feature")
                if raw.get("track") in TRACKS else "feature",
                impact=_level(raw.get("impact")), effort=_level(raw.get("effort")),
                evidence=str(raw.get("evidence") or ""), source="strategist"))
        except BacklogError:
            continue
    if proposal is None and shown:
        best = shown[0]
        proposal = StrategyProposal(item_objective(best),
                                    "the strategist proposed nothing; best backlog item",
                                    backlog_id=best["id"])
    if proposal is None or not proposal.next_objective:
        return None
    if proposal.backlog_id is not None:
        backlog.set_state(proposal.backlog_id, "in_progress", mission_id=mission_id)
    return proposal


def settle(store: Store, mission: dict[str, Any], completed: bool) -> int | None:
    """The chained ``mission`` ended: the backlog item its parent took becomes ``done``
    (``completed``) or ``open`` again. Returns the item's id, if any."""
    parent = mission.get("parent_mission_id")
    if not parent:
        return None
    rows = store.query(
        "SELECT json_extract(payload, '$.backlog_id') AS item FROM events "
        "WHERE mission_id = ? AND kind = 'strategy.proposed' ORDER BY id DESC LIMIT 1", (parent,))
    if not rows or rows[0]["item"] is None:
        return None
    item_id = int(rows[0]["item"])
    row = store.get("backlog", item_id)
    if row is None or row["state"] != "in_progress":
        return None
    Backlog(store).set_state(item_id, "done" if completed else "open", mission_id=mission["id"])
    return item_id


def _level(value: Any) -> int:
    try:
        return min(5, max(1, int(value)))
    except (TypeError, ValueError):
        return 3
