"""Episodic memory across real missions (real repo, real store, scripted agents that read
their prompts): the first mission's failure is recorded as an episode, and the second
mission's planner and worker prompts carry it as a lesson."""

from __future__ import annotations

from pathlib import Path

import anyio
import pygit2

from engine.config import load_config
from engine.controller import Controller
from engine.learning import episodes
from engine.store import Store
from tests.e2e.conftest import AMBITION_OK, OBJECTIVE_MET, make_target, plan_entry, write_config

TRAP = "app/bye.py must begin with the line: # SPDX-License-Identifier: MIT"
LESSONED = "What earlier attempts learned"

# the worker fails unless its prompt carries the lesson; the planner says whether it saw it
CASSETTE = (
    plan_entry("Add a farewell", "app/bye.py",
               extra='match = "SPDX-License-Identifier"\ntimes = 1') .replace(
        '"description": "d"', '"description": "planned knowing the SPDX lesson"')
    + plan_entry("Add a farewell", "app/bye.py", extra="times = 1")
    + AMBITION_OK + OBJECTIVE_MET + f'''
[[interaction]]
role = "worker"
match = "(?s){LESSONED}.*SPDX-License-Identifier"
actions = [
  {{ type = "write", path = "app/bye.py", content = "# SPDX-License-Identifier: MIT\\ndef bye():\\n    return 'bye'\\n" }},
  {{ type = "commit", message = "Add a farewell" }},
]

[[interaction]]
role = "worker"
cost_usd = 0.25
actions = [{{ type = "fail", error = "{TRAP}" }}]
''')


def run_mission(root: Path, objective: str) -> tuple[Controller, object]:
    config = load_config(write_config(root, CASSETTE, "[rounds]\nmax_rounds = 1\n"))
    config = config.model_copy(update={"target": config.target.model_copy(
        update={"objective": objective})})
    controller = Controller(config, Store(config.state_dir() / "mission.db"))
    controller.prepare()
    return controller, anyio.run(controller.run)


def test_a_failure_becomes_a_lesson_in_the_next_missions_prompts(tmp_path: Path) -> None:
    make_target(tmp_path)
    first, outcome1 = run_mission(tmp_path, "Make greetings friendlier with a farewell")
    store = first.store
    rows = episodes.list_episodes(store)
    kinds = {r["kind"]: r for r in rows}
    assert set(kinds) == {"unit", "mission"}, rows
    unit_ep = kinds["unit"]
    assert unit_ep["outcome"] == "failed" and "SPDX-License-Identifier" in unit_ep["failure_reason"]
    assert unit_ep["files"] == "app/bye.py" and unit_ep["cost_usd"] > 0
    assert unit_ep["title"] == "Add a farewell"
    assert kinds["mission"]["mission_id"] == outcome1.mission_id  # type: ignore[attr-defined]
    first.store.close()

    second, outcome2 = run_mission(tmp_path, "Make greetings friendlier with a farewell")
    units = second.store.units(outcome2.mission_id)  # type: ignore[attr-defined]
    # the planner saw the lesson (the SPDX-matching entry answered)
    assert units[0]["description"] == "planned knowing the SPDX lesson"
    # and so did the worker: it followed the convention, so the unit merged
    assert [u["status"] for u in units] == ["merged"]
    green = second.rt.repo.green_head()  # type: ignore[union-attr]
    commit = second.rt.repo.pygit[green].peel(pygit2.Commit)  # type: ignore[union-attr]
    text = commit.tree["app/bye.py"].data.decode()
    assert text.startswith("# SPDX-License-Identifier: MIT")


PLAN_TWO = '''
[[interaction]]
role = "planner"
actions = [{ type = "text", text = '{"units": [{"title": "Add a farewell", "description": "d", "files_hint": ["app/bye.py"], "acceptance_criteria": ["ok"], "leaf": true}, {"title": "Add a welcome", "description": "d", "files_hint": ["app/welcome.py"], "acceptance_criteria": ["ok"], "dependencies": ["Add a farewell"], "leaf": true}]}' }]
'''
MARKER = ('<mc-result>{"status": "completed", "summary": "added bye", '
          '"conventions": [{"text": "modules under app/ start with # SPDX-License-Identifier: MIT",'
          ' "paths": ["app/"]}], "gotchas": ["bye() is imported by the CLI"]}</mc-result>')
CONTEXT_CASSETTE = PLAN_TWO + AMBITION_OK + OBJECTIVE_MET + f'''
[[interaction]]
role = "worker"
when = {{ unit_title = "Add a farewell" }}
actions = [
  {{ type = "write", path = "app/bye.py", content = "# SPDX-License-Identifier: MIT\\ndef bye():\\n    return 'bye'\\n" }},
  {{ type = "commit", message = "Add a farewell" }},
  {{ type = "text", text = '{MARKER}' }},
]

[[interaction]]
role = "worker"
when = {{ unit_title = "Add a welcome" }}
match = "(?s){LESSONED}.*convention \\\\(app/\\\\): modules under app/ start with # SPDX"
actions = [
  {{ type = "write", path = "app/welcome.py", content = "# SPDX-License-Identifier: MIT\\ndef welcome():\\n    return 'hi'\\n" }},
  {{ type = "commit", message = "Add a welcome" }},
]

[[interaction]]
role = "worker"
when = {{ unit_title = "Add a welcome" }}
actions = [{{ type = "fail", error = "no convention in my prompt" }}]
'''


def test_a_reported_convention_reaches_a_later_worker_in_scope(tmp_path: Path) -> None:
    make_target(tmp_path)
    config = load_config(write_config(tmp_path, CONTEXT_CASSETTE, "[rounds]\nmax_rounds = 1\n"))
    controller = Controller(config, Store(config.state_dir() / "mission.db"))
    controller.prepare()
    outcome = anyio.run(controller.run)
    units = {u["title"]: u for u in controller.store.units(outcome.mission_id)}
    assert units["Add a welcome"]["status"] == "merged", units["Add a welcome"]["reason"]
    state_rows = controller.store.query("SELECT kind, text, paths, seen FROM context_items")
    assert {(r["kind"], r["paths"]) for r in state_rows} == {
        ("convention", '["app/"]'), ("gotcha", '["app/bye.py"]')}
