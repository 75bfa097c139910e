"""Span bookkeeping under :class:`~engine.services.tracing.spans.TraceBuilder`.

:class:`SpanBook` routes each event to its ``_on_<kind>`` handler, adopts a mission on
first sight (replaying its earlier events silently, so a resumed mission continues its
trace) and opens, closes and continues spans; which event opens or ends which span is the
subclass's business.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from engine.models import Event
from engine.services.tracing.records import (
    CLOSE_ORDER,
    MAX_SPAN_EVENTS,
    UNSET,
    SpanRecord,
    _Entity,
    _hash,
    _Mission,
    _Open,
    clip,
    mission_seed,
)
from engine.store import Store


class SpanBook:
    """The open spans of every mission seen, and the emitting of the ones that end."""


    def __init__(self, store: Store, sink: Callable[[SpanRecord], None], *,
                 export_after: int | None = None) -> None:
        self.store = store
        self.sink = sink
        self.export_after = export_after  # None: derived per mission (see _resume_point)
        self.missions: dict[int, _Mission] = {}
        self._replaying = False

    # ------------------------------------------------------------------ entry point
    def handle(self, event: Event) -> None:
        if event.mission_id is None:
            return
        mission = self.missions.get(event.mission_id)
        if mission is None:
            mission = self._adopt(event.mission_id, event.id)
            if mission is None:
                return
        handler = getattr(self, "_on_" + event.kind.replace(".", "_"), None)
        if handler is not None:
            handler(mission, event)

    def _resume_point(self, mission_id: int) -> int:
        """The last event before this process took the mission over: written by
        ``adopt_for_resume`` on the newest ``mission.resumed`` event (0: never resumed)."""
        rows = self.store.query(
            "SELECT id, payload FROM events WHERE mission_id = ? AND kind = 'mission.resumed'"
            " ORDER BY id DESC LIMIT 1", (mission_id,))
        if not rows:
            return 0
        before = json.loads(rows[0]["payload"] or "{}").get("last_event_before")
        return int(before) if isinstance(before, int) else int(rows[0]["id"]) - 1

    def _adopt(self, mission_id: int, before: int) -> _Mission | None:
        """First sight of a mission: its trace, and its earlier events replayed silently."""
        if self.store.get("missions", mission_id) is None:
            return None
        seed = mission_seed(self.store, mission_id)
        mission = _Mission(mission_id, _hash(seed, 16), seed, export_after=self.export_after
                           if self.export_after is not None else self._resume_point(mission_id))
        self.missions[mission_id] = mission
        if self._replaying:
            return mission
        self._replaying = True
        try:
            last = 0
            while True:
                batch = self.store.events_after(last, mission_id)
                for event in batch:
                    if event.id >= before:
                        return mission
                    last = event.id
                    self.handle(event)
                if not batch:
                    return mission
        finally:
            self._replaying = False

    # ------------------------------------------------------------------ span plumbing
    def _span_id(self, mission: _Mission, key: tuple[str, Any], event_id: int) -> int:
        return _hash(f"{mission.seed}|{key[0]}:{key[1]}|{event_id}", 8)

    def _entity(self, mission: _Mission, key: tuple[str, Any], name: str, *,
                parent: tuple[str, Any] | None, kind: str = "internal",
                base: dict[str, Any] | None = None) -> _Entity:
        entity = mission.entities.get(key)
        if entity is None:
            entity = _Entity(key, name, kind, parent, base or {})
            mission.entities[key] = entity
        return entity

    def _parent_span(self, mission: _Mission, entity: _Entity, event: Event) -> int | None:
        parent = mission.entities.get(entity.parent) if entity.parent else None
        if parent is None:
            parent = mission.entities.get(("mission", mission.id))
        if parent is None:
            return None
        if parent.open is None and parent.interrupted and not mission.ended:
            self._open(mission, parent, event)
        return parent.open.span_id if parent.open is not None else parent.last_span

    def _open(self, mission: _Mission, entity: _Entity, event: Event,
              attributes: dict[str, Any] | None = None) -> _Open:
        """Open a span for ``entity`` at ``event`` (a continuation if it had one before)."""
        if entity.open is not None:
            return entity.open
        span_id = self._span_id(mission, entity.key, event.id)
        if entity.key[0] == "mission":
            parent = entity.first_span  # a continuation hangs under the first mission span
        else:
            parent = self._parent_span(mission, entity, event)
        attrs = {**entity.base, **(attributes or {})}
        links: list[tuple[int, int, dict[str, Any]]] = []
        if entity.last_span is not None:
            attrs["mc.continued"] = True
            links.append((mission.trace_id, entity.last_span, {"mc.link": "continues"}))
        entity.open = _Open(entity.name, span_id, parent, entity.kind, event.ts, event.id,
                            attrs, links=links)
        if entity.first_span is None:
            entity.first_span = span_id
        entity.interrupted = False
        return entity.open

    def _close(self, mission: _Mission, entity: _Entity, event: Event, *,
               status: str = UNSET, description: str | None = None,
               attributes: dict[str, Any] | None = None, interrupted: bool = False) -> None:
        span = entity.open
        if span is None:
            return
        entity.open = None
        entity.last_span = span.span_id
        entity.interrupted = interrupted
        if event.id <= mission.export_after:
            return  # an earlier process emitted it
        attrs = dict(span.attributes)
        attrs.update(attributes or {})
        if interrupted:
            attrs["mc.interrupted"] = True
        record = SpanRecord(
            name=span.name, trace_id=mission.trace_id, span_id=span.span_id,
            parent_id=span.parent_id, kind=span.kind, start=span.start,
            end=max(event.ts, span.start), attributes={k: v for k, v in attrs.items()
                                                       if v is not None},
            events=span.events, links=span.links, status=status,
            description=clip(description) if description else None,
        )
        self.sink(record)

    def _event(self, entity: _Entity | None, name: str, event: Event, **attrs: Any) -> None:
        if entity is None or entity.open is None or len(entity.open.events) >= MAX_SPAN_EVENTS:
            return
        entity.open.events.append((name, event.ts, {k: v for k, v in attrs.items()
                                                    if v is not None}))

    def _close_all(self, mission: _Mission, event: Event, *, reason: str,
                   interrupted: bool, status: str, keep_mission: bool = False) -> None:
        for kind in CLOSE_ORDER:
            if kind == "mission" and keep_mission:
                continue
            for entity in list(mission.entities.values()):
                if entity.key[0] == kind and entity.open is not None:
                    self._close(mission, entity, event, status=status, description=reason,
                                interrupted=interrupted)

    def _context_parent(self, mission: _Mission) -> tuple[str, Any]:
        """Where work without a unit goes: the newest epoch while it is open, else the mission."""
        epoch = mission.entities.get(mission.epoch) if mission.epoch else None
        if epoch is not None and (epoch.open is not None or epoch.interrupted):
            return epoch.key
        return ("mission", mission.id)

    def _row(self, table: str, row_id: Any) -> dict[str, Any]:
        return self.store.get(table, row_id) or {}

