"""HITL gates as the controller uses them: ask, wait, and treat a timeout as deny."""

from __future__ import annotations

from engine.gates.hitl import gate_enabled, wait_for_decision
from engine.models import ApprovalStatus
from engine.runtime import Runtime


async def approve_or_deny(
    rt: Runtime, gate: str, title: str, *, unit_id: str | None = None, diffstat: str = "", diff: str = ""
) -> bool:
    """True when the action may go ahead. Gates that are off always pass."""
    if not gate_enabled(rt.config, gate):
        return True
    timeout = rt.config.hitl.poll_timeout
    approval_id = rt.store.create_approval(
        mission_id=rt.mission_id, gate=gate, title=title, unit_id=unit_id,
        diffstat=diffstat, diff=diff[:200_000], timeout=timeout,
    )
    if rt.auto_approve:
        rt.store.decide_approval(approval_id, True, by="--yes")
        return True
    status = await wait_for_decision(rt.store, approval_id, timeout=timeout)
    if status != ApprovalStatus.APPROVED:
        row = rt.store.get("approvals", approval_id) or {}
        by = f" by {row['decided_by']}" if row.get("decided_by") else ""
        rt.log(f"{gate} not approved ({status}{by}): {title}", level="warning", unit_id=unit_id)
    return status == ApprovalStatus.APPROVED
