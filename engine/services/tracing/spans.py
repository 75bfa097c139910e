"""Spans from the event stream: the mission's trace, rebuilt the same way in any process.

:class:`TraceBuilder` turns ``events`` rows (``engine/store/events.py``; vocabulary in
``docs/architecture.md``) into finished spans, :class:`SpanRecord`, handed to a sink:

    mission
    +-- epoch
    |   +-- unit
    |   |   +-- invoke_agent worker     (one agent session, GenAI conventions)
    |   |   +-- approval large_merge
    |   +-- invoke_agent planner | reviewer | objective_check ...
    |   +-- merge batch
    |   |   +-- verification
    |   +-- push
    |   +-- approval push
    +-- verification                     (the baseline)

Identity is derived, never random: the trace id from the mission (project path, mission
id, ``started_at``), each span id from its entity and the id of the event that opened it.
A span is emitted once, when the event that ends it is processed, with start and end from
the events' ``ts``. Events up to ``export_after`` were seen by an earlier process (it
exported the spans they closed): they are replayed silently to rebuild what is open, so a
resumed mission continues its trace. Spans a dead process left open are ended at
``mission.resumed`` with status ERROR and ``mc.interrupted = true`` (at ``mission.status ->
interrupted`` after Ctrl-C); what goes on after the resume opens *continuation* spans
(``mc.continued = true``, a link to the interrupted span) under the same parents.

Agent sessions follow the OpenTelemetry GenAI semantic conventions (agent spans,
``open-telemetry/semantic-conventions-genai``, docs/gen-ai/gen-ai-agent-spans.md, and
semantic-conventions v1.37+ for ``gen_ai.provider.name``): span name ``invoke_agent
{gen_ai.agent.name}``, ``gen_ai.operation.name = invoke_agent``, ``gen_ai.provider.name``
(and the older ``gen_ai.system``), ``gen_ai.agent.name``, ``gen_ai.request.model``,
``gen_ai.response.model``, ``gen_ai.usage.input_tokens``, ``gen_ai.usage.output_tokens``,
``gen_ai.conversation.id`` (the CLI's session id), ``error.type``; the cost is
``mc.cost_usd``. Prompts, agent text, tool inputs and outputs, diffs and verification
output are never put on a span.
"""

from __future__ import annotations

import logging
from typing import Any

from engine.models import Event
from engine.services.tracing.book import SpanBook
from engine.services.tracing.records import (
    ACTIVE_MERGE,
    ACTIVE_UNIT,
    ERROR,
    ERROR_MISSION,
    ERROR_UNIT,
    ERROR_VERIFICATION,
    FINAL_UNIT,
    OK,
    TERMINAL_MISSION,
    UNSET,
    SpanRecord,
    _hash,
    _Mission,
    clip,
    mission_seed,
    provider_of,
    strip_userinfo,
    trace_id_for,
)

# SpanRecord, OK, ERROR, trace_id_for, provider_of, strip_userinfo live in records.py and
# are re-exported here, where other modules and tests import them.
__all__ = ["ERROR", "OK", "SpanBook", "SpanRecord", "TraceBuilder", "provider_of",
           "strip_userinfo", "trace_id_for"]

log = logging.getLogger(__name__)


class TraceBuilder(SpanBook):
    """Feed it every event in id order (:meth:`handle`); it calls ``sink`` per finished span.

    ``store`` is read for details the events point at (a unit's epoch and title, an
    attempt's tokens, a merge's batch); ``export_after``: events with an id up to this were
    handled by an earlier process, spans they end are not emitted again.
    """

    # ------------------------------------------------------------------ mission
    def _on_mission_created(self, mission: _Mission, event: Event) -> None:
        row = self._row("missions", mission.id)
        project = self.store.get("projects", row.get("project_id")) if row.get("project_id") else None
        base = {"mc.mission.id": mission.id,
                "mc.mission.objective": clip(row.get("objective", "")),
                "mc.project": (project or {}).get("name")}
        entity = self._entity(mission, ("mission", mission.id), "mission", parent=None, base=base)
        span = self._open(mission, entity, event)
        parent_mission = row.get("parent_mission_id")
        if parent_mission:
            seed = mission_seed(self.store, int(parent_mission))
            span.attributes["mc.mission.parent_id"] = parent_mission
            span.links.append((_hash(seed, 16), self._span_id_of_root(seed, int(parent_mission)),
                               {"mc.link": "chained from"}))

    def _span_id_of_root(self, seed: str, mission_id: int) -> int:
        rows = self.store.query(
            "SELECT id FROM events WHERE mission_id = ? AND kind = 'mission.created' LIMIT 1",
            (mission_id,))
        event_id = rows[0]["id"] if rows else 0
        return _hash(f"{seed}|mission:{mission_id}|{event_id}", 8)

    def _on_mission_status(self, mission: _Mission, event: Event) -> None:
        to, reason = event.payload.get("to"), event.payload.get("reason")
        entity = mission.entities.get(("mission", mission.id))
        if to == "paused":
            self._event(entity, "paused", event)
        elif to == "running" and event.payload.get("from") == "paused":
            self._event(entity, "resumed", event)
        if to == "interrupted":
            self._close_all(mission, event, reason=f"interrupted: {reason or 'the mission stopped'}",
                            interrupted=True, status=ERROR)
        elif to in TERMINAL_MISSION:
            self._close_all(mission, event, reason=f"mission {to}", interrupted=False,
                            status=UNSET, keep_mission=True)
            if entity is not None:
                self._close(mission, entity, event,
                            status=ERROR if to in ERROR_MISSION else UNSET,
                            description=f"{to}: {reason}" if to in ERROR_MISSION else None,
                            attributes={"mc.mission.status": to,
                                        "mc.mission.reason": clip(reason or ""),
                                        "mc.cost_usd": round(sum(mission.costs.values()), 6)})
            mission.ended = True

    def _on_mission_resumed(self, mission: _Mission, event: Event) -> None:
        self._close_all(mission, event, reason="interrupted: the mission process died",
                        interrupted=True, status=ERROR)
        mission.ended = False
        entity = mission.entities.get(("mission", mission.id))
        if entity is None:  # created before tracing knew it: a root of its own
            entity = self._entity(mission, ("mission", mission.id), "mission", parent=None,
                                  base={"mc.mission.id": mission.id})
        self._open(mission, entity, event, {"mc.mission.resumed": True})

    def _on_objective_checked(self, mission: _Mission, event: Event) -> None:
        self._event(mission.entities.get(("mission", mission.id)), "objective.checked", event,
                    met=bool(event.payload.get("met")))

    def _on_green_promoted(self, mission: _Mission, event: Event) -> None:
        units = event.payload.get("units") or []
        self._event(mission.entities.get(("mission", mission.id)), "green.promoted", event,
                    **{"mc.commit": event.payload.get("to"), "mc.units": len(units)})

    def _on_cost(self, mission: _Mission, event: Event) -> None:
        usd = float(event.payload.get("usd") or 0.0)
        mission.costs[event.unit_id] = mission.costs.get(event.unit_id, 0.0) + usd

    # ------------------------------------------------------------------ epochs
    def _on_epoch_created(self, mission: _Mission, event: Event) -> None:
        epoch_id = event.payload.get("id")
        row = self._row("epochs", epoch_id)
        key = ("epoch", epoch_id)
        entity = self._entity(mission, key, "epoch", parent=("mission", mission.id),
                              base={"mc.epoch.id": epoch_id, "mc.epoch.number": row.get("number")})
        mission.epoch = key
        self._open(mission, entity, event)

    def _on_epoch_status(self, mission: _Mission, event: Event) -> None:
        entity = mission.entities.get(("epoch", event.payload.get("id")))
        if entity is None:
            return
        to = event.payload.get("to")
        if to in ("running", "planning"):
            self._open(mission, entity, event)
            self._event(entity, "epoch.status", event, to=to)
        elif to in ("completed", "failed", "interrupted"):
            self._close(mission, entity, event, status=UNSET if to == "completed" else ERROR,
                        description=None if to == "completed" else f"epoch {to}",
                        attributes={"mc.epoch.status": to}, interrupted=to == "interrupted")

    def _on_epoch_feedback(self, mission: _Mission, event: Event) -> None:
        entity = mission.entities.get(("epoch", event.payload.get("epoch_id")))
        if entity is not None and entity.open is not None:
            entity.open.attributes.update({
                "mc.epoch.merged": event.payload.get("merged"),
                "mc.epoch.failed": event.payload.get("failed"),
                "mc.cost_usd": round(float(event.payload.get("cost") or 0.0), 6)})

    def _on_plan_scored(self, mission: _Mission, event: Event) -> None:
        epoch = mission.entities.get(mission.epoch) if mission.epoch else None
        self._event(epoch, "plan.scored", event, score=event.payload.get("score"),
                    accepted=event.payload.get("accepted"))

    # ------------------------------------------------------------------ units
    def _on_unit_created(self, mission: _Mission, event: Event) -> None:
        unit_id = event.payload.get("id") or event.unit_id
        row = self._row("units", unit_id)
        epoch = ("epoch", row["epoch_id"]) if row.get("epoch_id") else ("mission", mission.id)
        entity = self._entity(mission, ("unit", unit_id), "unit", parent=epoch, base={
            "mc.unit.id": unit_id, "mc.unit.title": clip(row.get("title", "")),
            "mc.unit.parent_id": row.get("parent_id"), "mc.unit.leaf": bool(row.get("is_leaf", 1)),
            "mc.unit.specialist": row.get("specialist")})
        self._open(mission, entity, event)

    def _on_unit_status(self, mission: _Mission, event: Event) -> None:
        entity = mission.entities.get(("unit", event.payload.get("id")))
        if entity is None:
            return
        to, reason = event.payload.get("to"), event.payload.get("reason")
        if to in ACTIVE_UNIT:
            self._open(mission, entity, event)
        self._event(entity, "unit.status", event, **{"from": event.payload.get("from"), "to": to,
                                                     "reason": clip(reason) if reason else None})
        if to in FINAL_UNIT:
            cost = mission.costs.get(entity.key[1])
            self._close(mission, entity, event, status=ERROR if to in ERROR_UNIT else UNSET,
                        description=f"{to}: {reason}" if to in ERROR_UNIT else None,
                        attributes={"mc.unit.status": to,
                                    "mc.unit.reason": clip(reason) if reason else None,
                                    "mc.cost_usd": round(cost, 6) if cost is not None else None})

    def _on_review_scored(self, mission: _Mission, event: Event) -> None:
        entity = mission.entities.get(("unit", event.unit_id))
        if entity is not None and entity.open is not None:
            entity.open.attributes.update({"mc.review.score": event.payload.get("score"),
                                           "mc.review.passed": event.payload.get("passed")})

    # ------------------------------------------------------------------ agent sessions
    def _on_attempt_started(self, mission: _Mission, event: Event) -> None:
        attempt_id = event.payload.get("attempt_id")
        if not attempt_id:
            return
        role = str(event.payload.get("role") or "agent")
        backend = str(event.payload.get("backend") or "")
        model = event.payload.get("model")
        provider = provider_of(backend, model)
        parent = ("unit", event.unit_id) if event.unit_id else self._context_parent(mission)
        entity = self._entity(mission, ("attempt", attempt_id), f"invoke_agent {role}",
                              parent=parent, kind="client", base={
                                  "gen_ai.operation.name": "invoke_agent",
                                  "gen_ai.agent.name": role,
                                  "gen_ai.provider.name": provider,
                                  "gen_ai.system": "gemini" if provider == "gcp.gemini" else provider,
                                  "gen_ai.request.model": model,
                                  "mc.agent.backend": backend, "mc.attempt.id": attempt_id,
                                  "mc.agent.slot": event.payload.get("slot"),
                                  "mc.unit.id": event.unit_id})
        self._open(mission, entity, event)

    def _on_agent_event(self, mission: _Mission, event: Event) -> None:
        attempt_id = event.payload.get("attempt_id")
        kind = event.payload.get("type")
        if kind == "init" and isinstance(event.payload.get("model"), str):
            mission.response_models[attempt_id] = event.payload["model"]
        elif kind == "usage" and isinstance(event.payload.get("tokens"), dict):
            mission.tokens[attempt_id] = event.payload["tokens"]
        elif kind in ("tool_use", "retry", "rate_limit"):
            entity = mission.entities.get(("attempt", attempt_id))
            self._event(entity, kind, event, **({"gen_ai.tool.name": event.payload.get("tool")}
                                                if kind == "tool_use" else {}))

    def _on_attempt_status(self, mission: _Mission, event: Event) -> None:
        if event.payload.get("to") != "running":
            self._finish_attempt(mission, event, event.payload.get("id"))

    def _on_attempt_finished(self, mission: _Mission, event: Event) -> None:
        self._finish_attempt(mission, event, event.payload.get("attempt_id"))

    def _finish_attempt(self, mission: _Mission, event: Event, attempt_id: Any) -> None:
        entity = mission.entities.get(("attempt", attempt_id))
        if entity is None or entity.open is None:
            return
        if event.id <= mission.export_after:
            self._close(mission, entity, event)  # silent: no details needed
            return
        row = self._row("attempts", attempt_id)
        tokens = mission.tokens.pop(attempt_id, {})
        status = row.get("status") or event.payload.get("status") or event.payload.get("to")
        reason = row.get("failure_reason") or event.payload.get("failure_reason")
        error = row.get("error") or event.payload.get("error")
        cost = row.get("cost_usd", event.payload.get("cost_usd"))
        attrs = {
            "gen_ai.response.model": mission.response_models.pop(attempt_id, None),
            "gen_ai.usage.input_tokens": row.get("input_tokens", tokens.get("input")),
            "gen_ai.usage.output_tokens": row.get("output_tokens", tokens.get("output")),
            "gen_ai.usage.cache_read.input_tokens": row.get("cache_read_tokens") or None,
            "gen_ai.usage.cache_creation.input_tokens": row.get("cache_write_tokens") or None,
            "gen_ai.conversation.id": row.get("session_id"),
            "mc.cost_usd": round(float(cost), 6) if cost is not None else None,
            "mc.cost_estimated": bool(row.get("cost_estimated")) if row else None,
            "mc.agent.turns": row.get("turns", event.payload.get("turns")),
            "mc.agent.status": status,
        }
        failed = status != "completed"
        if failed:
            attrs["error.type"] = str(reason or status or "_OTHER")
        self._close(mission, entity, event, status=ERROR if failed else UNSET,
                    description=(f"{reason or status}: {error}" if error else str(reason or status))
                    if failed else None, attributes=attrs)

    # ------------------------------------------------------------------ merge queue
    def _on_merge_status(self, mission: _Mission, event: Event) -> None:
        merge_id = event.payload.get("id")
        to = event.payload.get("to")
        row = self._row("merges", merge_id)
        batch = row.get("batch_id")
        if not batch:
            return
        key = ("batch", batch)
        members = mission.batch_members.setdefault(batch, set())
        entity = mission.entities.get(key)
        if to in ACTIVE_MERGE:
            if entity is None:
                entity = self._entity(mission, key, "merge batch",
                                      parent=self._context_parent(mission),
                                      base={"mc.batch.id": batch})
            if entity.open is None:
                self._open(mission, entity, event)
                mission.batch_outcomes[batch] = {}
            members.add(merge_id)
        if entity is None:
            return
        self._event(entity, "merge.status", event, **{"mc.merge.id": merge_id, "to": to,
                                                      "mc.unit.id": row.get("unit_id")})
        if to not in ACTIVE_MERGE and merge_id in members:
            members.discard(merge_id)
            outcomes = mission.batch_outcomes.setdefault(batch, {})
            outcomes[to] = outcomes.get(to, 0) + 1
            if not members:
                promoted = outcomes.get("promoted", 0)
                bad = outcomes.get("failed", 0) + outcomes.get("conflict", 0)
                attrs = {f"mc.batch.{k}": v for k, v in outcomes.items()}
                attrs["mc.batch.size"] = sum(outcomes.values())
                self._close(mission, entity, event,
                            status=ERROR if bad and not promoted else UNSET,
                            description="no branch of the batch was promoted"
                            if bad and not promoted else None, attributes=attrs)

    def _on_verification_started(self, mission: _Mission, event: Event) -> None:
        vid = event.payload.get("id")
        row = self._row("verifications", vid)
        batch = ("batch", row.get("batch_id"))
        parent = batch if batch in mission.entities else self._context_parent(mission)
        entity = self._entity(mission, ("verification", vid), "verification", parent=parent, base={
            "mc.verification.id": vid, "mc.commit": event.payload.get("commit"),
            "mc.verification.baseline": bool(event.payload.get("baseline"))})
        self._open(mission, entity, event)

    def _on_verification_status(self, mission: _Mission, event: Event) -> None:
        to = event.payload.get("to")
        entity = mission.entities.get(("verification", event.payload.get("id")))
        if entity is None or entity.open is None or to == "running":
            return
        row = self._row("verifications", event.payload.get("id"))
        accepted = row.get("accepted")
        failing = row.get("failing_tests")
        attrs = {"mc.verification.status": to, "mc.verification.exit_code": row.get("exit_code"),
                 "mc.verification.duration_s": row.get("duration_s"),
                 "mc.verification.accepted": bool(accepted) if accepted is not None else None,
                 "mc.verification.failing_tests": len(failing) if isinstance(failing, list) else None}
        bad = to in ERROR_VERIFICATION and not accepted
        self._close(mission, entity, event, status=ERROR if bad else UNSET,
                    description=f"verification {to}" if bad else None, attributes=attrs)

    # ------------------------------------------------------------------ push and approvals
    def _on_push_started(self, mission: _Mission, event: Event) -> None:
        key = ("push", event.id)
        entity = self._entity(mission, key, "push", parent=self._context_parent(mission), base={
            "mc.push.remote": strip_userinfo(str(event.payload.get("remote") or "")),
            "mc.push.branch": event.payload.get("branch"), "mc.commit": event.payload.get("commit")})
        mission.push = key
        self._open(mission, entity, event)

    def _on_push_result(self, mission: _Mission, event: Event) -> None:
        entity = mission.entities.get(mission.push) if mission.push else None
        if entity is None or entity.open is None:  # refused before it started (the gate said no)
            entity = self._entity(mission, ("push", event.id), "push",
                                  parent=self._context_parent(mission),
                                  base={"mc.commit": event.payload.get("commit")})
            self._open(mission, entity, event)
        mission.push = None
        ok = bool(event.payload.get("ok"))
        reason = event.payload.get("reason")
        self._close(mission, entity, event, status=UNSET if ok else ERROR,
                    description=None if ok else f"push failed: {reason or 'see the log'}",
                    attributes={"mc.push.ok": ok,
                                "mc.push.rejected": bool(event.payload.get("rejected"))})

    def _on_approval_requested(self, mission: _Mission, event: Event) -> None:
        approval_id = event.payload.get("id")
        gate = str(event.payload.get("gate") or "approval")
        parent = ("unit", event.unit_id) if event.unit_id else self._context_parent(mission)
        entity = self._entity(mission, ("approval", approval_id), f"approval {gate}",
                              parent=parent, base={
                                  "mc.approval.id": approval_id, "mc.approval.gate": gate,
                                  "mc.approval.title": clip(event.payload.get("title") or "")})
        self._open(mission, entity, event)

    def _on_approval_status(self, mission: _Mission, event: Event) -> None:
        entity = mission.entities.get(("approval", event.payload.get("id")))
        if entity is None or entity.open is None:
            return
        row = self._row("approvals", event.payload.get("id"))
        self._close(mission, entity, event, attributes={
            "mc.approval.decision": event.payload.get("to"),
            "mc.approval.decided_by": row.get("decided_by")})
