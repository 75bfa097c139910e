"""Human-in-the-loop approvals: wait for someone to decide an ``approvals`` row.

A decision can come from anywhere that writes the row (``mc approve ID`` / ``mc deny ID``, the
TUI, another process) or from an *approval file* that the engine also polls. Its format, one
decision per line::

    # comments and blank lines are ignored; case does not matter
    approve 12
    deny 13

``approved``/``yes``/``y`` and ``denied``/``no``/``n`` are accepted too, and ``#12`` for ``12``.
If the file both approves and denies the same id, deny wins (the safe default). The file is
only read, never rewritten; a missing or unreadable file is ignored.

On timeout the approval is set to ``expired``, which callers treat as a denial. If the waiting
task is cancelled, a still-pending approval is expired too (in a shielded scope) so nothing is
left dangling, and the cancellation propagates.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial
from pathlib import Path

import anyio

from engine.config import MissionConfig
from engine.models import ApprovalStatus
from engine.store.db import Store, StoreError

_LINE = re.compile(r"^\s*(approve|approved|yes|y|deny|denied|no|n)\s+#?(\d+)\s*(?:#.*)?$", re.I)
_APPROVE_WORDS = {"approve", "approved", "yes", "y"}


def gate_enabled(config: MissionConfig, gate: str) -> bool:
    """Whether the HITL gate ``gate`` ("push", "large_merge", "plan", "fixup") is switched on."""
    return bool(config.hitl.enabled) and gate in config.hitl.gates


def read_approval_file(path: Path, approval_id: int) -> bool | None:
    """The decision the file holds for ``approval_id``: True, False, or None (none / unreadable)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return None
    decision: bool | None = None
    for line in text.splitlines():
        match = _LINE.match(line)
        if not match or int(match.group(2)) != approval_id:
            continue
        if match.group(1).lower() in _APPROVE_WORDS:
            decision = True if decision is None else decision
        else:
            decision = False  # deny wins
    return decision


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
    approval_file: Path | None = None,
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
            if approval_file is not None:
                decision = read_approval_file(approval_file, approval_id)
                if decision is not None:
                    decide = partial(
                        store.decide_approval, approval_id, decision, by=f"file:{approval_file}"
                    )
                    await anyio.to_thread.run_sync(decide)
                    finished = True
                    return _status(store, approval_id)
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
