"""Human-in-the-loop approvals: wait for someone to decide an ``approvals`` row.

A decision can come from anything that writes the row with ``Store.decide_approval``: ``mc
approve ID`` / ``mc deny ID``, the TUI, y / n typed at a headless terminal, or an approval
channel (``engine/channels``: the approval file, Telegram). The first decision wins.

On timeout the approval is set to ``expired``, which callers treat as a denial. If the waiting
task is cancelled, a still-pending approval is expired too (in a shielded scope) so nothing is
left dangling, and the cancellation propagates.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio

from engine.config import MissionConfig
from engine.models import ApprovalStatus
from engine.store.db import Store, StoreError


def gate_enabled(config: MissionConfig, gate: str) -> bool:
    """Whether the HITL gate ``gate`` ("push", "large_merge", "plan", "fixup") is switched on."""
    return bool(config.hitl.enabled) and gate in config.hitl.gates


def _status(store: Store, approval_id: int) -> ApprovalStatus:
    row = store.get("approvals", approval_id)
    if row is None:
        raise StoreError(f"approval {approval_id} does not exist")
    return ApprovalStatus(row["status"])


def _expire(store: Store, approval_id: int, reason: str) -> ApprovalStatus:
    """Set a still-pending approval to EXPIRED (atomically); returns the final status."""
    with store.transaction():
        status = _status(store, approval_id)
        if status is ApprovalStatus.PENDING:
            store.set_status("approvals", approval_id, ApprovalStatus.EXPIRED, reason=reason)
            status = ApprovalStatus.EXPIRED
    return status


async def wait_for_decision(
    store: Store,
    approval_id: int,
    *,
    timeout: float,
    poll_interval: float = 0.2,
    on_tick: Callable[[float], None] | None = None,
) -> ApprovalStatus:
    """Poll until the approval is decided; returns APPROVED, DENIED or EXPIRED.

    ``on_tick(remaining_seconds)`` is called on every poll (e.g. to show a countdown).
    """
    deadline = anyio.current_time() + timeout
    finished = False
    try:
        while True:
            status = _status(store, approval_id)
            if status is not ApprovalStatus.PENDING:
                finished = True
                return status
            remaining = deadline - anyio.current_time()
            if remaining <= 0:
                finished = True
                return await anyio.to_thread.run_sync(
                    _expire, store, approval_id, f"no decision within {timeout:g}s"
                )
            if on_tick is not None:
                on_tick(remaining)
            await anyio.sleep(min(poll_interval, remaining))
    finally:
        if not finished:  # cancelled (or an error): do not leave the request pending
            with anyio.CancelScope(shield=True):
                try:
                    _expire(store, approval_id, "the waiting engine stopped")
                except StoreError:
                    pass
