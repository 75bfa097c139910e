"""Reflections in a real mission (real repo, store, scripted agents that read their
prompts): an epoch with a failed unit gets one reflection call, stored, and the next
plan's prompt carries it."""

from __future__ import annotations

from pathlib import Path

import anyio

from engine.learning import reflection
from tests.e2e.conftest import AMBITION_OK, OBJECTIVE_MET, plan_entry
from tests.integration.mission_support import make_controller

REFLECTION = ('```json\\n{"reflection": "The farewell failed: app/ modules need an SPDX '
              'header.", "lessons": ["Start every app/ module with # SPDX-License-Identifier: '
              'MIT"]}\\n```')
CASSETTE = (
    plan_entry("Add a farewell", "app/bye.py", extra="times = 1")
    # the second plan only exists if the planner read the reflection
    + plan_entry("Add a farewell with its header", "app/bye.py",
                 extra='match = "reflection after epoch 1: The farewell failed"')
    + AMBITION_OK + OBJECTIVE_MET + f'''
[[interaction]]
role = "reflection"
cost_usd = 0.01
actions = [{{ type = "text", text = '{REFLECTION}' }}]

[[interaction]]
role = "worker"
when = {{ unit_title = "Add a farewell" }}
actions = [{{ type = "fail", error = "app/bye.py lacks the SPDX header" }}]

[[interaction]]
role = "worker"
when = {{ unit_title = "Add a farewell with its header" }}
actions = [
  {{ type = "write", path = "app/bye.py", content = "# SPDX-License-Identifier: MIT\\ndef bye():\\n    return 'bye'\\n" }},
  {{ type = "commit", message = "Add a farewell" }},
]
''')


def test_a_failed_epoch_is_reflected_on_and_the_next_plan_reads_it(tmp_path: Path) -> None:
    controller = make_controller(tmp_path, CASSETTE, "[rounds]\nmax_rounds = 3\n")
    outcome = anyio.run(controller.run)
    store = controller.store
    rows = reflection.stored(store, outcome.mission_id)
    assert len(rows) == 1  # one call, for the one epoch in which something failed
    assert rows[0]["number"] == 1 and "SPDX header" in rows[0]["text"]
    assert rows[0]["lessons"] == ["Start every app/ module with # SPDX-License-Identifier: MIT"]
    calls = store.query("SELECT COUNT(*) AS n FROM attempts WHERE role = 'reflection'")
    assert calls[0]["n"] == 1
    titles = {u["title"]: u["status"] for u in store.units(outcome.mission_id)}
    assert titles == {"Add a farewell": "failed", "Add a farewell with its header": "merged"}
    assert any(e.kind == "reflection" for e in store.events_after(0, outcome.mission_id))
