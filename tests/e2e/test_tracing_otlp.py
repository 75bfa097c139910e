"""`mc mission` with [tracing] on: spans reach a real OTLP/HTTP receiver on loopback, and a
mission killed and resumed continues the same trace (issue 13)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.services.tracing import trace_id_for
from engine.store import Store
from tests.e2e.conftest import (
    AMBITION_OK,
    OBJECTIVE_MET,
    leftover_processes,
    make_target,
    run_mc,
    worker_entry,
    write_config,
)
from tests.integration.tracing_support import CASSETTE, TWO_UNITS, check_tree
from tests.support.otlp_receiver import OtlpReceiver

pytestmark = pytest.mark.slow

FAST_EXPORT = {"OTEL_BSP_SCHEDULE_DELAY": "50"}


def tracing_section(endpoint: str) -> str:
    return f'[tracing]\nenabled = true\nendpoint = "{endpoint}"\nservice_name = "mc-e2e"\n'


def wait_until(predicate, timeout: float = 30.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_a_mission_exports_its_tree_over_otlp_http(tmp_path: Path) -> None:
    make_target(tmp_path)
    with OtlpReceiver() as rx:
        config = write_config(tmp_path, CASSETTE, tracing_section(rx.endpoint))
        result = run_mc("mission", "--config", str(config), "--no-ui", env=FAST_EXPORT)
        assert result.returncode == 0, result.stdout + result.stderr
        spans = list(rx.spans)
    assert rx.requests and all(r["ok"] for r in rx.requests), rx.requests  # POST /v1/traces
    tree = check_tree(spans)
    assert {s["resource"]["service.name"] for s in spans} == {"mc-e2e"}
    with Store(tmp_path / "repo" / ".git" / "mc" / "mission.db") as store:
        assert f"{spans[0]['trace_id']:032x}" == trace_id_for(store, 1)
    units = {u["attributes"]["mc.unit.title"]: u for u in tree["units"]}
    assert units["Break the build"]["status"] == "ERROR"
    assert units["Add a farewell"]["attributes"]["mc.unit.status"] == "merged"
    worker = next(w for w in tree["workers"] if w["parent_id"] == units["Add a farewell"]["span_id"])
    assert worker["attributes"]["gen_ai.usage.input_tokens"] == 1200
    assert "tracing" not in result.stdout  # no export problem was reported


def test_a_collector_that_is_down_costs_the_mission_nothing_and_is_reported_once(
    tmp_path: Path,
) -> None:
    make_target(tmp_path)
    with OtlpReceiver() as rx:  # a port that was just free: nothing listens on it any more
        endpoint = rx.endpoint
    # the first export gives up after its retries (~3 s): the mission outlives that
    slow = CASSETTE.replace("actions = [\n  { type = \"write\", path = \"app/bye.py\"",
                            "actions = [\n  { type = \"sleep\", seconds = 4 },\n"
                            "  { type = \"write\", path = \"app/bye.py\"")
    assert slow != CASSETTE
    config = write_config(tmp_path, slow, tracing_section(endpoint))
    started = time.monotonic()
    result = run_mc("mission", "--config", str(config), "--no-ui", env=FAST_EXPORT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert time.monotonic() - started < 60
    with Store(tmp_path / "repo" / ".git" / "mc" / "mission.db") as store:
        assert store.latest_mission()["status"] == "completed"
        reports = [e.payload["message"] for e in store.events_after(0)
                   if e.kind == "log" and "tracing" in str(e.payload.get("message"))]
    assert len(reports) == 1, reports
    assert endpoint + "/v1/traces" in reports[0]


SLOW_WORKER = worker_entry("Add a farewell", "app/bye.py",
                           "def bye():\\n    return 'bye'\\n", sleep=2.5)

ONE_SLOW_UNIT = TWO_UNITS.replace(
    ', {"title": "Break the build", "description": "d", "files_hint": ["app/x.py"], '
    '"acceptance_criteria": ["tests pass"], "leaf": true}', "")


def test_a_killed_and_resumed_mission_continues_its_trace(tmp_path: Path) -> None:
    make_target(tmp_path)
    assert ONE_SLOW_UNIT != TWO_UNITS
    db = tmp_path / "repo" / ".git" / "mc" / "mission.db"
    with OtlpReceiver() as rx:
        config = write_config(tmp_path, ONE_SLOW_UNIT + AMBITION_OK + OBJECTIVE_MET + SLOW_WORKER,
                              tracing_section(rx.endpoint))
        proc = subprocess.Popen(
            [sys.executable, "-m", "mc_tui", "mission", "--config", str(config), "--no-ui"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
            start_new_session=True, env={**os.environ, **FAST_EXPORT},
        )
        try:
            def worker_started() -> bool:
                if not db.exists():
                    return False
                with Store(db) as store:
                    return bool(store.query(
                        "SELECT 1 FROM events WHERE kind = 'attempt.started' "
                        "AND json_extract(payload, '$.role') = 'worker'"))
            assert wait_until(worker_started), "the worker never started"
            time.sleep(0.5)  # the spans closed so far leave in the next batch
            assert wait_until(lambda: bool(rx.spans), 5)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        leftover_processes(tmp_path)
        first = list(rx.spans)
        assert not any(s["name"] == "mission" for s in first)  # still open when it died
        result = run_mc("mission", "--resume", "--config", str(config), "--no-ui", env=FAST_EXPORT)
        assert result.returncode == 0, result.stdout + result.stderr
        spans = list(rx.spans)

    assert len({s["trace_id"] for s in spans}) == 1, "the resumed run continues the same trace"
    with Store(db) as store:
        assert f"{spans[0]['trace_id']:032x}" == trace_id_for(store, 1)
    by_id = {s["span_id"]: s for s in spans}
    assert len(by_id) == len(spans), "no span is exported twice"
    roots = [s for s in spans if s["parent_id"] is None]
    assert [r["name"] for r in roots] == ["mission"]
    root = roots[0]
    assert root["attributes"].get("mc.interrupted") is True and root["status"] == "ERROR"
    assert all(s["parent_id"] in by_id for s in spans if s["parent_id"] is not None)
    # the session the kill cut short: ended at resume, with the reason
    killed = [s for s in spans if s["name"] == "invoke_agent worker" and s["status"] == "ERROR"]
    assert killed and "interrupted" in killed[0]["description"]
    # what went on after the resume hangs under continuations of the same mission
    resumed = [s for s in spans if s["name"] == "mission" and s is not root]
    assert len(resumed) == 1 and resumed[0]["parent_id"] == root["span_id"]
    assert resumed[0]["attributes"]["mc.continued"] is True
    assert resumed[0]["attributes"]["mc.mission.status"] == "completed"
    assert root["span_id"] in resumed[0]["links"]
    units = [s for s in spans if s["name"] == "unit"]
    assert any(u["attributes"].get("mc.interrupted") for u in units)
    merged = [u for u in units if u["attributes"].get("mc.unit.status") == "merged"]
    assert merged and merged[0]["attributes"]["mc.continued"] is True
    done = [w for w in spans if w["name"] == "invoke_agent worker" and w["status"] == "UNSET"]
    assert done and by_id[done[0]["parent_id"]] is merged[0]
    # spans the first process exported belong to the same trace as the resumed run's
    assert {s["span_id"] for s in first} <= set(by_id)
