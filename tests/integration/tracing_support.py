"""Helpers for the tracing tests: a scripted two-unit mission and span-tree checks."""

from __future__ import annotations

from collections import Counter
from typing import Any

from tests.e2e.conftest import AMBITION_OK, OBJECTIVE_MET, worker_entry

TWO_UNITS = '''
[[interaction]]
role = "planner"
actions = [{ type = "text", text = '{"units": [{"title": "Add a farewell", "description": "d", "files_hint": ["app/bye.py"], "acceptance_criteria": ["tests pass"], "leaf": true}, {"title": "Break the build", "description": "d", "files_hint": ["app/x.py"], "acceptance_criteria": ["tests pass"], "leaf": true}]}' }]
'''

FAILING_WORKER = '''
[[interaction]]
role = "worker"
when = { unit_title = "Break the build" }
cost_usd = 0.02
actions = [{ type = "fail", error = "the model gave up", reason = "bad_output", status = "failed" }]
'''

CASSETTE = (
    TWO_UNITS + AMBITION_OK + OBJECTIVE_MET + FAILING_WORKER
    + worker_entry("Add a farewell", "app/bye.py", "def bye():\\n    return 'bye'\\n",
                   extra="input_tokens = 1200\noutput_tokens = 340")
)


def check_tree(spans: list[dict[str, Any]]) -> dict[str, Any]:
    """Assert the common shape of one mission's trace; returns spans by role for more checks.

    ``spans``: dicts with name, trace_id, span_id, parent_id, attributes, status ("ERROR"...),
    description.
    """
    by_id = {s["span_id"]: s for s in spans}
    assert len(by_id) == len(spans), "a span id was exported twice"
    assert len({s["trace_id"] for s in spans}) == 1, "one mission, one trace"
    roots = [s for s in spans if s["parent_id"] is None]
    assert [r["name"] for r in roots] == ["mission"], [(s["name"], s["parent_id"]) for s in spans]
    for span in spans:
        if span["parent_id"] is not None:
            assert span["parent_id"] in by_id, f"{span['name']}: its parent was not exported"

    def parent(span: dict[str, Any]) -> dict[str, Any]:
        return by_id[span["parent_id"]]

    epochs = [s for s in spans if s["name"] == "epoch"]
    units = [s for s in spans if s["name"] == "unit"]
    agents = [s for s in spans if s["name"].startswith("invoke_agent ")]
    assert epochs and all(parent(e)["name"] == "mission" for e in epochs)
    assert units and all(parent(u)["name"] == "epoch" for u in units)
    workers = [a for a in agents if a["attributes"]["gen_ai.agent.name"] == "worker"]
    assert workers and all(parent(w)["name"] == "unit" for w in workers)
    for agent in agents:
        attrs = agent["attributes"]
        assert attrs["gen_ai.operation.name"] == "invoke_agent"
        assert agent["name"] == f"invoke_agent {attrs['gen_ai.agent.name']}"
        assert attrs["gen_ai.provider.name"] and attrs["gen_ai.system"]
        assert "gen_ai.request.model" in attrs and "gen_ai.usage.input_tokens" in attrs
        assert "gen_ai.usage.output_tokens" in attrs and "mc.cost_usd" in attrs
        assert agent["kind"] == "client"
    verifications = [s for s in spans if s["name"] == "verification"]
    batches = [s for s in spans if s["name"] == "merge batch"]
    assert batches and verifications
    assert any(parent(v)["name"] == "merge batch" for v in verifications)
    assert Counter(parent(b)["name"] for b in batches).keys() <= {"epoch", "mission"}
    return {"epochs": epochs, "units": units, "agents": agents, "workers": workers,
            "verifications": verifications, "batches": batches, "by_id": by_id}
