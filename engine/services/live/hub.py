"""One tail per project store, fanned out to every page following it.

A :class:`ProjectHub` polls its store's ``events`` table by id (the store is written by a
mission in another process), groups new events per mission, renders each group's update
once (a JSON string) and hands it to the subscribers following that mission. Reading and
fan-out run on the event loop without awaiting in between, so a subscriber's snapshot and
the updates after it never overlap or leave a gap. A subscriber that falls behind
(:data:`QUEUE_MAX` updates unread) is sent a fresh snapshot instead of the backlog.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.services.live.snapshot import Batch, latest_mission_id, snapshot, update
from engine.store import Store, StoreError

POLL_INTERVAL_S = 0.1
QUEUE_MAX = 256
READ_LIMIT = 1000
MISSIONS_LISTED = 20


@dataclass(eq=False)
class Subscriber:
    """One page: the mission it follows (``follow_newest``: switch when a new one starts)."""

    mission_id: int | None
    follow_newest: bool
    queue: asyncio.Queue[tuple[str, str]] = field(
        default_factory=lambda: asyncio.Queue(maxsize=QUEUE_MAX))
    resync: bool = False


class ProjectHub:
    """The tail of one project's store (opened when it exists) and its subscribers."""

    def __init__(self, name: str, store_path: Path) -> None:
        self.name = name
        self.store_path = store_path
        self.store: Store | None = None
        self.last_id = 0
        self.subscribers: set[Subscriber] = set()
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ store
    def open(self) -> Store | None:
        """The store, opened on first use once the file exists (``None`` before that)."""
        if self.store is None and self.store_path.exists():
            try:
                self.store = Store(self.store_path)
            except StoreError:
                return None
            # last_id stays where it was (0): a store that appeared while pages follow it is
            # read from its first event (subscribe() skips the history when nobody follows)
        return self.store

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self.store is not None:
            self.store.close()
            self.store = None

    # ------------------------------------------------------------------ subscribing
    def subscribe(self, mission_id: int | None) -> tuple[Subscriber, str]:
        """Register a page; returns it and its snapshot (JSON). Synchronous on purpose."""
        sub = Subscriber(mission_id=mission_id, follow_newest=mission_id is None)
        idle = self._task is None or self._task.done()
        if idle and self.open() is not None and self.store is not None:
            self.last_id = self.store.last_event_id()  # nobody needs the events in between
        snap = self.snapshot_json(sub)
        self.subscribers.add(sub)
        if idle:
            self._task = asyncio.get_running_loop().create_task(self._run())
        return sub, snap

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)

    def snapshot_json(self, sub: Subscriber) -> str:
        """A snapshot for ``sub`` at :attr:`last_id` (resolving 'newest' now)."""
        return json.dumps(self.snapshot(sub), default=str)

    def snapshot(self, sub: Subscriber) -> dict[str, Any]:
        store = self.open()
        if store is None:
            snap = snapshot_empty()
        else:
            if sub.follow_newest:
                sub.mission_id = latest_mission_id(store)
            snap = snapshot(store, sub.mission_id, self.last_id)
            snap["missions"] = store.query(
                "SELECT id, status, objective, started_at FROM missions ORDER BY id DESC LIMIT ?",
                (MISSIONS_LISTED,))
        snap["project"] = self.name
        snap["follow_newest"] = sub.follow_newest
        return snap

    # ------------------------------------------------------------------ the tail
    async def _run(self) -> None:
        while self.subscribers:
            try:
                self.poll()
            except StoreError:
                pass  # a locked or vanished store: try again next tick
            await asyncio.sleep(POLL_INTERVAL_S)
        self._task = None

    def poll(self) -> int:
        """Read new events, send each mission's update to its followers; returns events read."""
        store = self.open()
        if store is None:
            return 0
        events = store.events_after(self.last_id)
        if not events:
            return 0
        while len(events) % READ_LIMIT == 0 and len(events) < READ_LIMIT * 20:
            more = store.events_after(events[-1].id)
            if not more:
                break
            events += more
        self.last_id = events[-1].id
        batches: dict[int | None, Batch] = {}
        new_mission = False
        for event in events:
            if event.kind == "mission.created":
                new_mission = True
            batches.setdefault(event.mission_id, Batch(event.mission_id)).add(event)
        rendered: dict[int | None, str] = {}
        for sub in list(self.subscribers):
            if sub.resync:
                continue
            if new_mission and sub.follow_newest and latest_mission_id(store) != sub.mission_id:
                self._resync(sub)
                continue
            batch = batches.get(sub.mission_id)
            if batch is None or sub.mission_id is None:
                continue
            if sub.mission_id not in rendered:
                rendered[sub.mission_id] = json.dumps(update(store, batch), default=str)
            try:
                sub.queue.put_nowait(("update", rendered[sub.mission_id]))
            except asyncio.QueueFull:
                self._resync(sub)
        return len(events)

    @staticmethod
    def _resync(sub: Subscriber) -> None:
        """Drop the backlog; the page's stream sends a fresh snapshot next."""
        sub.resync = True
        while not sub.queue.empty():
            sub.queue.get_nowait()
        sub.queue.put_nowait(("resync", ""))


def snapshot_empty() -> dict[str, Any]:
    return {"mission": None, "last_event_id": 0, "rows": {}, "events": [], "agent": [],
            "costs": [], "missions": []}
