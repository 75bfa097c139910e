"""Run an agent session and record it in the store as it happens.

One ``attempts`` row per session (status running, then its outcome), an
``attempt.started`` / ``attempt.finished`` event pair, and ``agent.event`` rows
for the live log. Text, thinking and stderr are coalesced (flushed every
``FLUSH_INTERVAL_S`` or when the kind changes) and usage keeps only the latest
value, so a chatty agent does not write thousands of rows. The identity of the
process the session runs in (pid, process group, start time, boot id; see
``engine/lifeline.py``) goes on the attempt row the moment it starts, so a resumed
run can end it if this mc dies first.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import anyio

from engine import clock
from engine.agents.placement import current_host
from engine.agents.types import (
    ERROR,
    AgentBackend,
    AgentEvent,
    AgentRequest,
    AgentResult,
    FailureReason,
)
from engine.lifeline import ProcessIdentity, on_spawn
from engine.store import Store

FLUSH_INTERVAL_S = 0.2
MAX_BUFFER_CHARS = 8000
MAX_EVENT_CHARS = 8000
COALESCED = ("text", "thinking", "stderr")


class EventRecorder:
    """Writes agent events to the store as ``agent.event`` rows, coalescing chatty kinds."""

    def __init__(self, store: Store, *, attempt_id: int, mission_id: int | None,
                 unit_id: str | None, slot: int | None,
                 forward: Callable[[AgentEvent], None] | None = None) -> None:
        self.store = store
        self.attempt_id = attempt_id
        self.mission_id = mission_id
        self.unit_id = unit_id
        self.slot = slot
        self.forward = forward
        self.rows = 0
        self._kind: str | None = None
        self._parts: list[str] = []
        self._size = 0
        self._since = 0.0
        self._usage: AgentEvent | None = None

    def __call__(self, event: AgentEvent) -> None:
        if self.forward is not None:
            try:
                self.forward(event)
            except Exception as exc:  # a broken listener must not kill the agent session
                self.forward = None
                self._write("notice", f"event listener failed and was detached: {exc}", None, {})
        if event.type == "usage":
            self._usage = event
        elif event.type in COALESCED:
            if self._kind != event.type:
                self.flush()
                self._kind, self._since = event.type, time.monotonic()
            sep = "" if event.data.get("delta") or not self._parts else "\n"
            self._parts.append(sep + event.text)
            self._size += len(event.text)
            if self._size >= MAX_BUFFER_CHARS:
                self.flush()
        else:
            self.flush()
            self._write(event.type, event.text, event.tool, event.data)
        if self._kind is not None and time.monotonic() - self._since >= FLUSH_INTERVAL_S:
            self.flush()

    def flush(self) -> None:
        if self._kind is not None and self._parts:
            self._write(self._kind, "".join(self._parts), None, {})
        self._kind, self._parts, self._size = None, [], 0
        if self._usage is not None:
            usage, self._usage = self._usage, None
            self._write("usage", usage.text, None, usage.data)

    def flush_if_stale(self) -> None:
        if self._usage is not None or (
            self._kind is not None and time.monotonic() - self._since >= FLUSH_INTERVAL_S
        ):
            self.flush()

    def _write(self, kind: str, text: str, tool: str | None, data: dict[str, Any]) -> None:
        if len(text) > MAX_EVENT_CHARS:
            text = text[:MAX_EVENT_CHARS] + f"\u2026 [{len(text) - MAX_EVENT_CHARS} more chars]"
        extra: dict[str, Any] = {}
        if "is_error" in data:
            extra["is_error"] = bool(data["is_error"])
        if kind == "usage" and isinstance(data.get("total"), dict):
            extra["tokens"] = data["total"]
        if kind == "init":  # the model the CLI resolved and its session (traces, reports)
            extra.update({k: data[k] for k in ("model", "session_id") if isinstance(data.get(k), str)})
        self.store.append_event(
            "agent.event", mission_id=self.mission_id, unit_id=self.unit_id,
            attempt_id=self.attempt_id, slot=self.slot, type=kind, text=text, tool=tool, **extra,
        )
        self.rows += 1


async def run_recorded(
    store: Store,
    backend: AgentBackend,
    request: AgentRequest,
    *,
    mission_id: int | None,
    unit_id: str | None = None,
    slot: int | None = None,
    on_event: Callable[[AgentEvent], None] | None = None,
) -> tuple[int, AgentResult]:
    """Run ``request`` on ``backend``, recording the attempt and its events.

    Returns ``(attempt_id, result)``. Never raises for agent failures; a backend bug
    becomes an ``error`` result with reason ``crash``. On cancellation the attempt is
    closed as ``error``/``cancelled`` and the cancellation propagates. The ``attempts``
    table needs a mission: with ``mission_id=None`` no row is written and the id is 0.
    """
    attempt_id = _start(store, backend, request, mission_id, unit_id, slot)
    recorder = EventRecorder(store, attempt_id=attempt_id, mission_id=mission_id,
                             unit_id=unit_id, slot=slot, forward=on_event)
    result: AgentResult | None = None

    async def flusher() -> None:
        while True:
            await anyio.sleep(FLUSH_INTERVAL_S)
            recorder.flush_if_stale()

    def record_process(ident: ProcessIdentity) -> None:
        if attempt_id:
            store.update("attempts", attempt_id, pid=ident.pid, pgid=ident.pgid,
                         proc_start=ident.start_ticks, boot_id=ident.boot_id)

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(flusher)
            try:
                with on_spawn(record_process):
                    result = await backend.run(request, recorder)
            except Exception as exc:  # a backend bug must not take the mission down
                result = AgentResult(
                    status=ERROR, error=f"{type(exc).__name__}: {exc}",
                    failure_reason=FailureReason.CRASH, summary="agent backend crashed",
                )
            tg.cancel_scope.cancel()
    except anyio.get_cancelled_exc_class():
        with anyio.CancelScope(shield=True):
            recorder.flush()
            _finish(store, request, attempt_id, mission_id, unit_id, slot, AgentResult(
                status=ERROR, error="cancelled", failure_reason=FailureReason.CANCELLED,
                summary="cancelled",
            ))
        raise
    assert result is not None
    recorder.flush()
    _finish(store, request, attempt_id, mission_id, unit_id, slot, result)
    return attempt_id, result


def _start(store: Store, backend: AgentBackend, request: AgentRequest, mission_id: int | None,
           unit_id: str | None, slot: int | None) -> int:
    on = current_host()
    host = on.name if on is not None else None
    with store.transaction():
        attempt_id = 0
        if mission_id is not None:
            attempt_id = int(store.insert("attempts", {
                "mission_id": mission_id, "unit_id": unit_id, "role": str(request.role),
                "backend": backend.name, "model": request.model, "slot": slot,
                "status": "running", "started_at": clock.now(), "host": host,
            }))
        store.append_event(
            "attempt.started", mission_id=mission_id, unit_id=unit_id, attempt_id=attempt_id,
            role=str(request.role), backend=backend.name, model=request.model, slot=slot,
            **({"host": host} if host else {}),  # only with [[hosts]] (docs/hosts.md)
        )
    return attempt_id


def _finish(store: Store, request: AgentRequest, attempt_id: int, mission_id: int | None,
            unit_id: str | None, slot: int | None, result: AgentResult) -> None:
    reason = str(result.failure_reason) if result.failure_reason else None
    with store.transaction():
        if attempt_id:
            store.set_status(
                "attempts", attempt_id, result.status, reason=reason,
                summary=result.summary, cost_usd=result.cost_usd or 0.0,
                cost_estimated=int(result.cost_estimated), input_tokens=result.tokens.input,
                output_tokens=result.tokens.output, cache_read_tokens=result.tokens.cache_read,
                cache_write_tokens=result.tokens.cache_write, turns=result.turns,
                session_id=result.session_id, exit_code=result.exit_code, error=result.error,
                failure_reason=reason, ended_at=clock.now(),
            )
        if result.cost_usd:
            store.add_cost(
                mission_id=mission_id, role=str(request.role), usd=result.cost_usd,
                model=request.model, unit_id=unit_id, attempt_id=attempt_id or None,
                estimated=result.cost_estimated,
            )
        store.append_event(
            "attempt.finished", mission_id=mission_id, unit_id=unit_id, attempt_id=attempt_id,
            slot=slot, status=result.status, cost_usd=result.cost_usd, turns=result.turns,
            failure_reason=reason, error=result.error,
        )
