"""The one-unit mission the precheck re-run tests share ("Add a shout", its precheck forced and
re-run once): its cassette and its settings, so each test states only what differs."""

from __future__ import annotations

from tests.e2e.conftest import AMBITION_OK, OBJECTIVE_MET, plan_of

SHOUT = ('  { type = "write", path = "app/shout.py", '
         "content = \"def shout():\\n    return 'HEY'\\n\" },\n")
BREAK_GREET = ('  { type = "write", path = "app/greet.py", '
               "content = \"def greet(name):\\n    return 'HEY ' + name\\n\" },\n")
RESTORE_GREET = ('  { type = "write", path = "app/greet.py", '
                 "content = \"def greet(name):\\n    return f'hello {name}'\\n\" },\n")


def shout_cassette(*, breaks_greet: bool, fixup: str) -> str:
    """Plan, ambition and objective answers; the worker writes app/shout.py (and breaks
    greet() when ``breaks_greet``) and commits; every fixup agent runs the ``fixup`` action
    lines (TOML inline tables, one per line, each ending with a comma), then commits."""
    work = SHOUT + (BREAK_GREET if breaks_greet else "")
    return (plan_of(("Add a shout", "app/shout.py")) + AMBITION_OK + OBJECTIVE_MET + f'''
[[interaction]]
role = "worker"
when = {{ unit_title = "Add a shout" }}
actions = [
{work}  {{ type = "commit", message = "Add a shout" }},
]

[[interaction]]
role = "fixup"
actions = [
{fixup}  {{ type = "commit", message = "fix" }},
]
''')


def rerun_settings(command: str, *, rounds: int, workers: int | None = None) -> str:
    """Config for the mission: ``command`` as the verification, the precheck forced (also
    when the queue is idle) and re-run once, one fixup candidate, ``rounds`` fixup rounds."""
    parallel = f"[scheduler.parallel]\nnum_workers = {workers}\n" if workers else ""
    return (f'[target.verification]\ncommand = "{command}"\nprecheck = true\n'
            "precheck_when_queue_idle = true\nflaky_reruns = 1\n" + parallel
            + f"[green_branch]\nfixup_candidates = 1\nfixup_max_attempts = {rounds}\n")
