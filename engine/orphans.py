"""End the agent processes a dead run left behind, before a new run touches a worktree.

Each supervised process ends its group when mc dies (``engine/supervisor.py``), so
normally there is nothing to do. This is the second line: a supervisor that was killed
itself, a grace period still running when the new mc starts, a platform without the
lifeline. The controller calls :func:`end_orphans` right after it takes the mission lock
(so every ``running`` attempt in the store belongs to a dead process) and before it adopts
a mission, commits leftover work or cleans a pool slot.

A recorded process group is ended (SIGTERM, ``grace`` seconds, SIGKILL) only when it is
provably the one mc started:

* the boot id matches (after a reboot nothing of the dead run survives);
* the group leader (the supervisor; its pid is the group id) is alive with the recorded
  start time (``/proc/<pid>/stat`` field 22), or
* the leader is gone but members of its group remain, every one started no earlier than
  the leader did. A pid still used as a process group id is never handed to a new process,
  so such members are the dead run's own descendants.

A live process with the recorded pid but another start time is a different process that
reuses the number: it is left alone, and so is everything where there is no ``/proc`` to
check against.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from engine.agents.process import group_members
from engine.lifeline import ProcessIdentity, boot_id, start_ticks
from engine.store import Store

ORPHAN_GRACE_S = 3.0
POLL_S = 0.05

ENDED, GONE, REUSED, UNKNOWN = "ended", "gone", "reused", "unknown"


def is_ours(ident: ProcessIdentity) -> str:
    """``ENDED`` if ``ident``'s group is still there and provably ours (to be ended),
    ``GONE`` if nothing of it is left, ``REUSED`` if the pid now names another process,
    ``UNKNOWN`` if it cannot be checked (no start time recorded or no ``/proc``)."""
    if ident.start_ticks is None or not os.path.isdir("/proc"):
        return UNKNOWN
    if ident.pgid in (os.getpgrp(), os.getpid()):
        return REUSED  # never our own group
    if ident.boot_id is not None and ident.boot_id != boot_id():
        return GONE
    leader_start = start_ticks(ident.pid)
    if leader_start is not None:
        try:
            leads = ident.pgid == ident.pid == os.getpgid(ident.pid)
        except OSError:
            leads = False
        return ENDED if leader_start == ident.start_ticks and leads else REUSED
    members = group_members(ident.pgid)
    if not members:
        return GONE
    starts = [start_ticks(pid) for pid in members]
    if all(s is None or s >= ident.start_ticks for s in starts):
        return ENDED
    return REUSED


def end_group(pgid: int, grace: float) -> bool:
    """SIGTERM group ``pgid``, wait up to ``grace`` s, then SIGKILL. True if SIGKILL was needed."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return False
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not group_members(pgid):
            return False
        time.sleep(POLL_S)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return False
    for _ in range(100):  # SIGKILL cannot be ignored; wait until the kernel took them down
        if not group_members(pgid):
            break
        time.sleep(POLL_S)
    return True


def end_orphans(store: Store, *, grace: float = ORPHAN_GRACE_S) -> list[str]:
    """End every still-running process of a ``running`` attempt in ``store``; returns notes.

    Call only while holding the mission lock (no live mc owns those attempts then). Each
    group ended, or left alone because its pid was reused, gets a warning ``log`` event on
    its mission.
    """
    notes: list[str] = []
    rows = store.query(
        "SELECT id, mission_id, unit_id, role, pid, pgid, proc_start, boot_id FROM attempts"
        " WHERE status = 'running' AND pid IS NOT NULL ORDER BY id"
    )
    for row in rows:
        ident = ProcessIdentity(int(row["pid"]), int(row["pgid"] or row["pid"]),
                                row["proc_start"], row["boot_id"])
        verdict = is_ours(ident)
        if verdict == ENDED:
            killed = end_group(ident.pgid, grace)
            how = "SIGKILL after SIGTERM was ignored" if killed else "SIGTERM"
            note = (f"ended the process group {ident.pgid} of {_who(row)}, left running by the "
                    f"dead mc, before touching its worktree ({how})")
        elif verdict == REUSED:
            note = (f"left pid {ident.pid} alone: it is no longer the agent of {_who(row)} "
                    "(another start time; the pid was reused)")
        else:
            continue
        notes.append(note)
        store.append_event("log", mission_id=row["mission_id"], unit_id=row["unit_id"],
                           level="warning", message=note, attempt_id=row["id"],
                           pid=ident.pid, pgid=ident.pgid, verdict=verdict)
    return notes


def _who(row: dict[str, Any]) -> str:
    unit = f", unit {row['unit_id']}" if row["unit_id"] else ""
    return f"attempt {row['id']} ({row['role']}{unit})"
