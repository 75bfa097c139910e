"""Traces of a scripted mission through the SDK's in-memory exporter (issue 13, [tracing])."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from engine.controller import run_mission
from engine.services.tracing import make_emitter, observing, trace_id_for, traces_url
from engine.services.tracing import plugin as tracing_plugin
from engine.services.tracing.spans import provider_of, strip_userinfo
from tests.integration.mission_support import make_controller
from tests.integration.tracing_support import CASSETTE, check_tree


def as_dict(span: ReadableSpan) -> dict[str, Any]:
    return {
        "name": span.name, "trace_id": span.context.trace_id, "span_id": span.context.span_id,
        "parent_id": span.parent.span_id if span.parent else None,
        "attributes": dict(span.attributes or {}),
        "status": span.status.status_code.name, "description": span.status.description,
        "kind": span.kind.name.lower(), "start": span.start_time, "end": span.end_time,
        "events": [e.name for e in span.events],
    }


SECRET = "tok-8d1f2c9e7b6a5d4c"


class InMemory:
    """Stands in for the process's OTLP emitter: the plugin's observer feeds the SDK's
    in-memory exporter instead."""

    def __init__(self, service_name: str) -> None:
        self.exporter = InMemorySpanExporter()
        self.emitter = make_emitter(self.exporter, service_name=service_name, batch=False)
        self.target = None

    def report(self, message: str) -> None:
        raise AssertionError(message)


def test_a_scripted_mission_gives_one_tree_with_genai_agent_spans(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    memory = InMemory("mc-test")
    monkeypatch.setattr(tracing_plugin, "shared_emitter", lambda endpoint, name: memory)
    monkeypatch.setenv("MC_TRACING_TEST_TOKEN", SECRET)  # a secret the mission's texts carry
    cassette = CASSETTE.replace("the model gave up", f"the model gave up ({SECRET})")
    controller = make_controller(
        tmp_path, cassette,
        f'[tracing]\nenabled = true\n[target]\nobjective = "Make greetings friendlier {SECRET}"\n')
    assert isinstance(controller.plugins.get("tracing"), tracing_plugin.TracingPlugin)
    store = controller.store
    exporter = memory.exporter
    anyio.run(run_mission, controller)
    spans = [as_dict(s) for s in exporter.get_finished_spans()]
    tree = check_tree(spans)
    mission_id = controller.mission_id
    assert mission_id is not None
    assert f"{spans[0]['trace_id']:032x}" == trace_id_for(store, mission_id)
    assert exporter.get_finished_spans()[0].resource.attributes["service.name"] == "mc-test"

    root = next(s for s in spans if s["name"] == "mission")
    assert root["attributes"]["mc.mission.status"] == "completed"
    assert root["status"] == "UNSET"
    assert root["end"] >= max(s["end"] for s in spans if s is not root) - 1_000_000
    units = {u["attributes"]["mc.unit.title"]: u for u in tree["units"]}
    good, bad = units["Add a farewell"], units["Break the build"]
    assert good["status"] == "UNSET" and good["attributes"]["mc.unit.status"] == "merged"
    assert bad["status"] == "ERROR" and bad["attributes"]["mc.unit.status"] == "failed"
    assert bad["description"]
    # the agent sessions of each unit, with GenAI attributes from the store
    good_workers = [w for w in tree["workers"] if w["parent_id"] == good["span_id"]]
    bad_workers = [w for w in tree["workers"] if w["parent_id"] == bad["span_id"]]
    assert good_workers and bad_workers
    ok = good_workers[-1]["attributes"]
    assert ok["gen_ai.usage.input_tokens"] == 1200 and ok["gen_ai.usage.output_tokens"] == 340
    assert ok["mc.cost_usd"] == pytest.approx(0.1)
    assert ok["gen_ai.response.model"] and ok["gen_ai.conversation.id"]
    assert ok["gen_ai.provider.name"] == ok["gen_ai.system"] == "mc.scripted"
    assert ok["gen_ai.request.model"] == "sonnet"
    failed = bad_workers[0]
    assert failed["status"] == "ERROR" and "the model gave up" in failed["description"]
    assert failed["attributes"]["error.type"] == "bad_output"
    # planner and objective check sit under the epoch; the baseline verification under the mission
    roles = {a["attributes"]["gen_ai.agent.name"]: a for a in tree["agents"]}
    assert tree["by_id"][roles["planner"]["parent_id"]]["name"] == "epoch"
    baseline = [v for v in tree["verifications"] if v["attributes"]["mc.verification.baseline"]]
    assert baseline and tree["by_id"][baseline[0]["parent_id"]]["name"] == "mission"
    promoted = [b for b in tree["batches"] if b["attributes"].get("mc.batch.promoted")]
    assert promoted
    # times come from the events: every child starts and ends inside the mission span
    assert all(root["start"] <= s["start"] <= s["end"] for s in spans)
    # nothing an agent said or was told is on a span
    text = repr(spans)
    assert "Decompose the objective" not in text and "def bye" not in text
    assert SECRET not in text and "[REDACTED]" in root["attributes"]["mc.mission.objective"]


def test_the_endpoint_gets_the_traces_path_once() -> None:
    assert traces_url("http://127.0.0.1:4318") == "http://127.0.0.1:4318/v1/traces"
    assert traces_url("http://127.0.0.1:4318/") == "http://127.0.0.1:4318/v1/traces"
    assert traces_url("https://gw.example/otlp/v1/traces") == "https://gw.example/otlp/v1/traces"
    assert traces_url("https://gw.example/otlp") == "https://gw.example/otlp/v1/traces"


def test_provider_names_and_remote_credentials() -> None:
    assert provider_of("claude", "sonnet") == "anthropic"
    assert provider_of("codex", None) == "openai"
    assert provider_of("gemini", "gemini-2.5-pro") == "gcp.gemini"
    assert provider_of("aider", "openrouter/anthropic/claude-sonnet-4") == "anthropic"
    assert provider_of("command", "mystery") == "_OTHER"
    assert provider_of("scripted", "sonnet") == "mc.scripted"
    assert strip_userinfo("https://bob:tok@host/x.git") == "https://host/x.git"
    assert strip_userinfo("origin") == "origin"


def test_status_code_names_match_the_sdk() -> None:
    assert StatusCode.ERROR.name == "ERROR"


def test_the_stand_alone_observer_gives_the_same_tree(tmp_path: Path) -> None:
    controller = make_controller(tmp_path, CASSETTE)  # [tracing] off: no plugin observer
    exporter = InMemorySpanExporter()
    emitter = make_emitter(exporter, service_name="mc-test", batch=False)

    async def main() -> None:
        async with observing(controller.store, emitter, export_after=0):
            await run_mission(controller)

    anyio.run(main)
    check_tree([as_dict(s) for s in exporter.get_finished_spans()])


def test_a_broken_observer_never_stops_the_mission(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from engine.services.tracing.spans import TraceBuilder

    def broken(self: TraceBuilder, *args: Any) -> None:
        raise RuntimeError("a bug in the span builder")

    memory = InMemory("mc-test")
    monkeypatch.setattr(tracing_plugin, "shared_emitter", lambda endpoint, name: memory)
    monkeypatch.setattr(TraceBuilder, "_on_unit_created", broken)
    controller = make_controller(tmp_path, CASSETTE, "[tracing]\nenabled = true\n")
    outcome = anyio.run(run_mission, controller)
    assert outcome.status == "completed"
    reports = [e.payload["message"] for e in controller.store.events_after(0)
               if e.kind == "log" and "tracing" in str(e.payload.get("message"))]
    assert len(reports) == 1 and "a bug in the span builder" in reports[0]
