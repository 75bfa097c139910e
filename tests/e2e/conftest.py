"""Helpers for end-to-end missions on small real git repos."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.support.target_repo import GIT_ENV, git, make_target

__all__ = ["GIT_ENV", "git", "make_target"]  # re-exported: tests import them from here


def write_config(root: Path, cassette: str, extra: str = "", *, backend: str = "scripted") -> Path:
    (root / "cassette.toml").write_text(textwrap.dedent(cassette))
    python = sys.executable
    text = f"""
[target]
name = "e2e"
path = "repo"
branch = "main"
objective = "Make greetings friendlier"
[target.verification]
command = "{python} -m unittest discover -s tests -t ."
timeout = 60
precheck = false
[scheduler]
session_timeout = 30
[scheduler.parallel]
num_workers = 2
[review]
gate_completion = false
[hitl]
enabled = false
[agent]
backend = "{backend}"
cassette = "cassette.toml"
"""
    config = root / "mission-control.toml"
    config.write_text(_merge_sections(text, textwrap.dedent(extra)))
    return config


def _merge_sections(base: str, extra: str) -> str:
    """Append ``extra`` keys into the matching [section] of ``base`` (tiny TOML merge for tests)."""
    import tomllib

    import tomlkit

    doc = tomlkit.parse(base)
    for section, values in tomllib.loads(extra).items():
        _deep_set(doc, section, values)
    return tomlkit.dumps(doc)


def _deep_set(doc, key, value):  # type: ignore[no-untyped-def]
    if isinstance(value, dict):
        if key not in doc:
            doc[key] = {}
        for k, v in value.items():
            _deep_set(doc[key], k, v)
    else:
        doc[key] = value


def processes_in(folder: Path) -> dict[int, str]:
    """Live processes whose working directory is inside ``folder``: ``{pid: command line}``."""
    found: dict[int, str] = {}
    root = str(folder.resolve())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if stat[stat.rfind(")") + 2] in "ZX":
            continue
        if cwd == root or cwd.startswith(root + os.sep):
            found[int(entry.name)] = cmdline.strip()
    return found


def leftover_processes(folder: Path, timeout: float = 12.0) -> dict[int, str]:
    """Processes still running in ``folder`` after ``timeout`` s (then SIGKILLed, so no test
    leaks them); empty when everything mc started there has ended."""
    deadline = time.monotonic() + timeout
    while (left := processes_in(folder)) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return left


def run_mc(*args: str, cwd: Path | None = None, timeout: float = 120,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mc_tui", *args], capture_output=True, text=True, cwd=cwd,
        env={**os.environ, "COLUMNS": "160", **(env or {})}, timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


PLAN_ONE = '''
[[interaction]]
role = "planner"
{extra}
actions = [{{ type = "text", text = '{{"units": [{{"title": "{title}", "description": "d", "files_hint": ["{path}"], "acceptance_criteria": ["tests pass"], "leaf": true}}]}}' }}]
'''


def plan_entry(title: str, path: str, extra: str = "") -> str:
    return PLAN_ONE.format(title=title, path=path, extra=extra)


def plan_of(*units: tuple[str, str] | tuple[str, str, list[str]]) -> str:
    """A planner entry answering ``units``: ``(title, path)`` or ``(title, path,
    dependencies)`` each, one file hint per unit (``plan_entry`` is the one-unit form)."""
    plan = {"units": [{"title": u[0], "files_hint": [u[1]], "acceptance_criteria": ["ok"],
                       **({"dependencies": u[2]} if len(u) > 2 else {})} for u in units]}
    return f"""
[[interaction]]
role = "planner"
actions = [{{ type = "text", text = '{json.dumps(plan)}' }}]
"""


def worker_entry(title: str, path: str, content: str, *, cost: float = 0.1, extra: str = "",
                 sleep: float = 0.0) -> str:
    """The worker for ``title``: (after ``sleep`` seconds) writes ``content`` to ``path`` and
    commits it with the title as its message."""
    pause = f'  {{ type = "sleep", seconds = {sleep} }},\n' if sleep else ""
    return f'''
[[interaction]]
role = "worker"
when = {{ unit_title = "{title}" }}
cost_usd = {cost}
{extra}
actions = [
{pause}  {{ type = "write", path = "{path}", content = "{content}" }},
  {{ type = "commit", message = "{title}" }},
]
'''


AMBITION_OK = '''
[[interaction]]
role = "ambition"
actions = [{ type = "text", text = '{"score": 8, "feedback": "fine"}' }]
'''

def objective_not_yet(feedback: str, confidence: float | None = None) -> str:
    """A cassette entry: the first objective check says "not met" with ``feedback``."""
    extra = f'"confidence": {confidence}, ' if confidence is not None else ""
    return f'''
[[interaction]]
role = "objective_check"
times = 1
actions = [{{ type = "text", text = '{{"met": false, {extra}"feedback": "{feedback}"}}' }}]
'''


OBJECTIVE_MET = '''
[[interaction]]
role = "objective_check"
actions = [{ type = "text", text = '{"met": true, "confidence": 0.9, "feedback": "done"}' }]
'''


@pytest.fixture
def target(tmp_path: Path) -> Path:
    make_target(tmp_path)
    return tmp_path
