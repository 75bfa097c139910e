"""Auto-discovery on a real git repository: real ruff, git grep, a Cobertura report, and the
gap analysis through a scripted planner answer; results land in the backlog, de-duplicated."""

from __future__ import annotations

import subprocess
from pathlib import Path

import anyio
import pytest
from click.testing import CliRunner
from llm_fakes import Canned

from engine.discovery import discover
from engine.discovery.run import parse_gaps
from engine.store import Store
from engine.strategy.backlog import Backlog
from mc_tui.cli import cli

APP = 'import os\n\n\ndef run(cmd):\n    # TODO: validate cmd first\n    return eval(cmd)\n'
SKIPPED = 'import pytest\n\n\n@pytest.mark.skip(reason="flaky")\ndef test_run():\n    pass\n'
COVERAGE = ('<?xml version="1.0" ?><coverage><packages><package name="app"><classes>'
            '<class name="app.py" filename="src/app.py" line-rate="0.2"/>'
            '<class name="ok.py" filename="src/ok.py" line-rate="0.9"/>'
            '</classes></package></packages></coverage>')
GAPS = ('```json\n{"items": ['
        '{"title": "Add a --dry-run flag", "track": "feature", "impact": 3, "effort": 2,'
        ' "evidence": "src/app.py:4 run() executes at once"},'
        '{"title": "No evidence here", "track": "feature", "impact": 5, "effort": 1},'
        '{"title": "Wrong track", "track": "docs", "evidence": "x"}]}\n```')


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "target"
    (root / "src").mkdir(parents=True)
    (root / "tests").mkdir()
    (root / "src" / "app.py").write_text(APP)
    (root / "tests" / "test_app.py").write_text(SKIPPED)
    (root / "coverage.xml").write_text(COVERAGE)
    (root / "ruff.toml").write_text('[lint]\nselect = ["F"]\n')
    git = ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "init"], check=True)
    return root


def run_discovery(repo: Path, backlog: Backlog, **kw: object):  # noqa: ANN201
    return anyio.run(lambda: discover(repo, backlog, **kw))  # type: ignore[arg-type]


def test_static_signals_and_gap_analysis_feed_the_backlog(repo: Path, tmp_path: Path) -> None:
    backlog = Backlog(Store(tmp_path / "mc.db"))
    ask = Canned(GAPS)
    result = run_discovery(repo, backlog, tracks=["quality", "tests", "security", "feature"],
                           ask=ask, failing=["tests/test_app.py::test_other"], network=False)
    titles = {r["title"]: r for r in backlog.items()}
    assert "Fix 1 ruff F401 finding (`os` imported but unused)" in titles  # quality: real ruff
    assert "src/app.py:1" in titles["Fix 1 ruff F401 finding (`os` imported but unused)"]["evidence"]
    assert any(t.startswith("Fix 1 ruff S307") for t in titles)  # security: bandit rules
    assert "Resolve TODO in src/app.py:5: validate cmd first" in titles
    assert "Re-enable the skipped test at tests/test_app.py:4" in titles
    assert "Fix the failing test tests/test_app.py::test_other" in titles
    assert "Raise test coverage of src/app.py" in titles and \
        "Raise test coverage of src/ok.py" not in titles
    assert titles["Add a --dry-run flag"]["evidence"] == "src/app.py:4 run() executes at once"
    assert "No evidence here" not in titles and "Wrong track" not in titles
    assert any("2 item(s) without evidence dropped" in n for n in result.notes)
    assert any(n.startswith("pip-audit: no requirements.txt") for n in result.notes)
    role, prompt = ask.calls[0]
    assert role == "planner" and "S307" in prompt and "Research" not in prompt
    # again: nothing new, everything known
    again = run_discovery(repo, backlog, tracks=["quality", "tests", "security", "feature"],
                          ask=Canned(GAPS), failing=["tests/test_app.py::test_other"],
                          network=False)
    assert again.added == [] and sorted(again.merged) == sorted(result.added)


def test_research_says_when_there_is_no_network(repo: Path, tmp_path: Path) -> None:
    backlog = Backlog(Store(tmp_path / "mc.db"))
    off = run_discovery(repo, backlog, tracks=["feature"], ask=Canned('{"items": []}'),
                        research=True, network=False)
    assert "research skipped: no network" in off.notes
    ask = Canned('{"items": []}')
    on = run_discovery(repo, backlog, tracks=["feature"], ask=ask, research=True, network=True)
    assert "research: on (network reachable)" in on.notes and "## Research" in ask.calls[0][1]


def test_a_missing_tool_is_said(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("engine.discovery.signals.find_tool", lambda name: None)
    (repo / "requirements.txt").write_text("requests==2.0.0\n")
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@e",
                    "commit", "-qm", "reqs"], check=True)
    result = run_discovery(repo, Backlog(Store(tmp_path / "mc.db")), tracks=["quality", "security"])
    assert "ruff (quality): not installed (pip install ruff); step skipped" in result.notes
    assert any(n.startswith("pip-audit: not installed") for n in result.notes)
    assert "gap analysis: no planner backend given; static signals only" in result.notes


def test_parse_gaps_rejects_a_non_list() -> None:
    from engine.planning.parse import PlanParseError

    with pytest.raises(PlanParseError):
        parse_gaps('{"items": 3}', ["feature"])


def test_mc_discover_with_the_scripted_planner(repo: Path, tmp_path: Path) -> None:
    cassette = tmp_path / "cassette.toml"
    cassette.write_text('[[interaction]]\nrole = "planner"\nmatch = "discovery analyst"\n'
                        'cost_usd = 0.02\n[[interaction.actions]]\ntype = "text"\n'
                        f"text = '''{GAPS}'''\n")
    config = tmp_path / "mission-control.toml"
    config.write_text(f'[target]\npath = "{repo}"\nobjective = "harden it"\n'
                      f'[state]\ndir = "{tmp_path / "state"}"\n'
                      f'[agent]\nbackend = "scripted"\ncassette = "{cassette}"\n'
                      '[discovery]\ntracks = ["feature", "quality"]\n')
    out = CliRunner(env={"COLUMNS": "250"}).invoke(cli, ["discover", "--config", str(config)])
    assert out.exit_code == 0, out.output
    assert "Add a --dry-run flag" in out.output and "ruff F401" in out.output
    assert "$0.0200" in out.output
    listing = CliRunner(env={"COLUMNS": "250"}).invoke(cli, ["priority", "list", "--config",
                                                             str(config)])
    assert "Add a --dry-run flag" in listing.output
