"""The append-only event log: rows first, in-process messages second.

``EventBus`` fans freshly committed events out to in-process subscribers
(anyio memory streams). A subscriber never loses an event: if its buffer
overflows, or an event was appended from another thread or process, it
catches up by reading the table after the last id it saw. ``follow`` is the
cross-process tail: it polls the table by id.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from engine.models import Event

SUBSCRIBER_BUFFER = 10_000
POLL_INTERVAL = 0.25
READ_LIMIT = 1000  # events one table read returns at most


def row_to_event(row: sqlite3.Row | tuple[Any, ...]) -> Event:
    id_, ts, kind, mission_id, unit_id, payload = tuple(row)
    return Event(
        id=id_, ts=ts, kind=kind, mission_id=mission_id, unit_id=unit_id,
        payload=json.loads(payload) if payload else {},
    )


def read_events_after(
    conn: sqlite3.Connection, after_id: int, *, mission_id: int | None = None,
    limit: int = READ_LIMIT,
) -> list[Event]:
    """Events with id > ``after_id`` in id order (the cross-process tail primitive)."""
    sql = "SELECT id, ts, kind, mission_id, unit_id, payload FROM events WHERE id > ?"
    params: list[Any] = [after_id]
    if mission_id is not None:
        sql += " AND mission_id = ?"
        params.append(mission_id)
    sql += " ORDER BY id LIMIT ?"
    params.append(limit)
    return [row_to_event(r) for r in conn.execute(sql, params).fetchall()]


class _Subscriber:
    def __init__(self, mission_id: int | None) -> None:
        self.mission_id = mission_id
        self.thread = threading.get_ident()
        self.send: MemoryObjectSendStream[Event]
        self.receive: MemoryObjectReceiveStream[Event]
        self.send, self.receive = anyio.create_memory_object_stream[Event](SUBSCRIBER_BUFFER)


class EventBus:
    """In-process publish/subscribe on top of the ``events`` table."""

    def __init__(self, read_after: Callable[[int, int | None], list[Event]]) -> None:
        self._read_after = read_after
        self._subscribers: list[_Subscriber] = []
        self._lock = threading.Lock()

    def publish(self, event: Event) -> None:
        """Hand a committed event to subscribers on the same thread; others poll the table."""
        me = threading.get_ident()
        with self._lock:
            subscribers = list(self._subscribers)
        for sub in subscribers:
            if sub.thread != me:
                continue
            # a subscriber to one mission gets the other events too, to skip: with every id
            # it can tell an unbroken stream (no table read) from a gap (one)
            try:
                sub.send.send_nowait(event)
            except (anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass  # the subscriber catches up from the table

    async def subscribe(
        self, *, after_id: int = 0, mission_id: int | None = None
    ) -> AsyncIterator[Event]:
        """Yield every event with id > ``after_id``, in order, live, without gaps."""
        sub = _Subscriber(mission_id)
        with self._lock:
            self._subscribers.append(sub)
        last = after_id
        try:
            for event in self._read_after(last, mission_id):
                last = event.id
                yield event
            while True:
                event = None
                with anyio.move_on_after(POLL_INTERVAL):
                    event = await sub.receive.receive()
                if event is not None and event.id <= last:
                    continue
                if event is not None and event.id == last + 1:
                    last = event.id
                    if mission_id is None or event.mission_id == mission_id:
                        yield event
                    continue
                # A gap (an event appended by another thread or process, or an overflow) or
                # a quiet period: read what the table has.
                upto = event.id if event is not None else None
                batch = self._read_after(last, mission_id)
                for missed in batch:
                    if upto is not None and missed.id > upto:
                        break
                    last = missed.id
                    yield missed
                if upto is not None and upto > last and (
                        len(batch) < READ_LIMIT or batch[-1].id >= upto):
                    last = upto  # all of ours up to it were read: the ids between are others'
        finally:
            with self._lock:
                self._subscribers.remove(sub)
            sub.send.close()
            sub.receive.close()


async def follow(
    read_after: Callable[[int, int | None], list[Event]],
    *,
    after_id: int = 0,
    mission_id: int | None = None,
    poll_interval: float = POLL_INTERVAL,
) -> AsyncIterator[Event]:
    """Tail the events table of a store another process writes (by id, forever)."""
    last = after_id
    while True:
        batch = read_after(last, mission_id)
        for event in batch:
            last = event.id
            yield event
        if not batch:
            await anyio.sleep(poll_interval)
