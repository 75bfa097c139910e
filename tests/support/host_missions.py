"""Two-unit missions for the worker-host tests (ssh, sandbox, ray): cassette and controller.

:func:`worker` is a cassette entry whose ``run`` action is a real shell command (on whatever
host runs the unit) that writes the unit's file and commits it; :func:`plan` plans ``units``
leaf units "Unit 1".. touching ``app/unit_<n>.py``; :func:`two_units` is the whole cassette
(planner, ambition, objective, two workers); :func:`prepared` writes the config with the
``[[hosts]]`` text appended and prepares the real controller; :func:`mission` does both on a
fresh target repo (``tmp_path/repo``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from engine.config import load_config
from engine.controller import Controller
from engine.store import Store
from tests.e2e.conftest import AMBITION_OK, OBJECTIVE_MET, make_target, write_config

GIT_ID = "-c user.name=agent -c user.email=agent@localhost"


def unit_module(n: int) -> str:
    """Shell: write ``app/unit_<n>.py`` (``def unit_<n>(): return <n>``)."""
    return f"printf 'def unit_{n}():\\\\n    return {n}\\\\n' > app/unit_{n}.py"


def worker(n: int, first: str = "", *, write: Callable[[int], str] = unit_module,
           extra: str = "") -> str:
    """The worker entry of "Unit n": runs ``first``, then ``write(n)`` (shell that writes
    the unit's file), then commits everything; ``extra`` adds TOML lines to the entry."""
    command = (f"{first}{write(n)}"
               f" && git add -A && git {GIT_ID} commit -qm 'Unit {n}'")
    return f'''
[[interaction]]
role = "worker"
when = {{ unit_title = "Unit {n}" }}
{extra}
actions = [{{ type = "run", command = "{command}" }}]
'''


def plan(units: int) -> str:
    """The planner entry: ``units`` leaf units "Unit 1".."Unit <units>"."""
    items = ", ".join(
        f'{{"title": "Unit {n}", "description": "d", "files_hint": ["app/unit_{n}.py"], '
        f'"acceptance_criteria": ["ok"], "leaf": true}}' for n in range(1, units + 1))
    return f'''
[[interaction]]
role = "planner"
actions = [{{ type = "text", text = '{{"units": [{items}]}}' }}]
'''


def two_units(firsts: tuple[str, str] = ("", ""),
              write: Callable[[int], str] = unit_module) -> str:
    """The cassette: plan two units, ambition ok, objective met, and both workers
    (``firsts[i]`` before worker i+1's write; ``write`` replaces :func:`unit_module`)."""
    return (plan(2) + AMBITION_OK + OBJECTIVE_MET + worker(1, firsts[0], write=write)
            + worker(2, firsts[1], write=write))


def prepared(tmp_path: Path, cassette: str, hosts: str) -> Controller:
    """Write the e2e config for ``cassette`` plus the ``hosts`` TOML; prepare its controller."""
    path = write_config(tmp_path, cassette)
    path.write_text(path.read_text() + hosts)
    config = load_config(path)
    controller = Controller(config, Store(config.state_dir() / "mission.db"))
    controller.prepare()
    return controller


def mission(tmp_path: Path, hosts: str, first: str = "") -> Controller:
    """A fresh target and the two-unit mission on ``hosts``, ``first`` before each write."""
    make_target(tmp_path)
    return prepared(tmp_path, two_units((first, first)), hosts)
