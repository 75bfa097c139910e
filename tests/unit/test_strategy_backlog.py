"""The persistent backlog: priority formula, de-duplication, Markdown import/export, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest
from click.testing import CliRunner
from llm_fakes import Canned

from engine.store import Store
from engine.strategy.backlog import (
    Backlog,
    BacklogError,
    BacklogItem,
    parse_markdown,
    priority_score,
)
from engine.strategy.chain import next_objective, settle
from mc_tui.cli import cli

DAY = 86400.0


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "mc.db")


def test_priority_formula() -> None:
    # weight x impact / effort x (1 + min(age, 90) / 30)
    assert priority_score(4, 2, 0, "quality") == 2.0
    assert priority_score(4, 2, 0, "security") == 3.0
    assert priority_score(4, 2, 30, "quality") == 4.0
    assert priority_score(4, 2, 900, "quality") == priority_score(4, 2, 90, "quality") == 8.0
    assert priority_score(3, 3, 0, "tests", {"tests": 2.0}) == 2.0


def test_age_raises_an_old_small_item_above_a_new_large_one(store: Store) -> None:
    old = Backlog(store, now=1000.0)
    old_id, _ = old.add(BacklogItem("Old chore", impact=2, effort=2))
    later = Backlog(store, now=1000.0 + 60 * DAY)
    new_id, _ = later.add(BacklogItem("New feature", impact=4, effort=2))
    assert [r["id"] for r in later.items()][0] == new_id  # stored scores: not recalculated yet
    assert later.recalc() == 1
    assert [r["id"] for r in later.items()] == [old_id, new_id]  # 1 x 3 = 3.0 > 2.0


def test_same_item_twice_is_merged_with_its_evidence(store: Store) -> None:
    b = Backlog(store)
    a, created = b.add(BacklogItem("Fix  the parser!", track="quality", evidence="p.py:1",
                                   source="discovery"))
    again, created2 = b.add(BacklogItem("fix the parser", track="quality", evidence="p.py:9",
                                        impact=5, source="discovery"))
    assert (created, created2, again) == (True, False, a)
    row = b.get(a)
    assert row["evidence"] == "p.py:1\np.py:9" and row["impact"] == 5
    # another track is another item
    assert b.add(BacklogItem("Fix the parser", track="tests"))[1] is True


def test_set_defer_and_pinned_score_survive_recalc(store: Store) -> None:
    b = Backlog(store)
    i, _ = b.add(BacklogItem("A"))
    j, _ = b.add(BacklogItem("B", impact=5, effort=1))
    b.set_score(i, 99.0)
    b.recalc()
    assert [r["id"] for r in b.items()] == [i, j]
    b.set_state(j, "deferred")
    assert [r["id"] for r in b.next_open()] == [i]
    with pytest.raises(BacklogError, match="no backlog item #42"):
        b.set_score(42, 1.0)


def test_markdown_round_trip(store: Store) -> None:
    b = Backlog(store)
    b.add(BacklogItem("Sanitise SQL", track="security", impact=5, effort=2, evidence="db.py:42 S608"))
    b.add(BacklogItem("Document the CLI", state="deferred"))
    text = b.export_markdown()
    assert "- [ ] Sanitise SQL | track=security impact=5 effort=2 id=1 | evidence: db.py:42 S608" in text
    assert "- [~] Document the CLI | track=feature impact=3 effort=3 id=2" in text
    other = Backlog(Store(store.path.parent / "other.db"))
    assert other.import_markdown(text) == (2, 0)
    assert other.export_markdown() == text
    assert other.import_markdown(text) == (0, 2)  # re-import updates, adds nothing


def test_bad_markdown_line_names_it_and_imports_nothing(store: Store) -> None:
    text = "# B\n- [ ] Good one | impact=2\n- [ ] Bad one | impact=9\n"
    with pytest.raises(BacklogError, match="line 3: impact: must be an integer 1-5"):
        Backlog(store).import_markdown(text)
    assert Backlog(store).items() == []
    with pytest.raises(BacklogError, match="line 1: unknown key 'size'"):
        parse_markdown("- [ ] X | size=3")
    with pytest.raises(BacklogError, match="track"):
        parse_markdown("- [x] X | track=docs")


def test_strategist_takes_a_backlog_item_and_adds_one(store: Store) -> None:
    b = Backlog(store)
    mid = store.insert("missions", {"objective": "o", "status": "completed", "started_at": 0})
    low, _ = b.add(BacklogItem("Low item", impact=1, effort=5))
    high, _ = b.add(BacklogItem("High item", track="security", impact=5, effort=1))
    ask = Canned(json.dumps({
        "next_objective": "Do the low item well", "rationale": "r", "backlog_id": low,
        "new_items": [{"title": "Cache tokens", "track": "feature", "impact": 2, "effort": 9,
                       "evidence": "auth.py:3"}, {"bad": 1}]}))
    proposal = anyio.run(lambda: next_objective(ask, b, mission_id=mid, objective="o",
                                                outcome="completed", merged=[], failed=[]))
    assert proposal is not None and proposal.next_objective == "Do the low item well"
    prompt = ask.calls[0][1]
    assert prompt.index(f"#{high} [security] High item") < prompt.index(f"#{low} [feature] Low item")
    assert b.get(low)["state"] == "in_progress" and b.get(low)["mission_id"] == mid
    cache = [r for r in b.items() if r["title"] == "Cache tokens"]
    assert cache and cache[0]["effort"] == 5 and cache[0]["source"] == "strategist"
    # the chained mission ends: the item is done
    store.append_event("strategy.proposed", mission_id=mid, objective="x", backlog_id=low)
    child = store.insert("missions", {"objective": "x", "status": "completed", "started_at": 1,
                                      "parent_mission_id": mid})
    assert settle(store, store.get("missions", child), True) == low
    assert b.get(low)["state"] == "done"


def test_strategist_without_an_answer_takes_the_best_item(store: Store) -> None:
    b = Backlog(store)
    mid = store.insert("missions", {"objective": "o", "status": "completed", "started_at": 0})
    best, _ = b.add(BacklogItem("Best", impact=5, effort=1, evidence="x.py:1"))
    b.add(BacklogItem("Other"))
    proposal = anyio.run(lambda: next_objective(Canned("no json here"), b, mission_id=mid,
                                                objective="o", outcome="", merged=[], failed=[]))
    assert proposal is not None and proposal.backlog_id == best
    assert proposal.next_objective == "Best\n\nEvidence:\nx.py:1"
    # an empty backlog and no answer: nothing
    empty = Backlog(Store(store.path.parent / "e.db"))
    assert anyio.run(lambda: next_objective(Canned("{}"), empty, mission_id=mid, objective="o",
                                            outcome="", merged=[], failed=[])) is None


def test_cli_priority_commands(tmp_path: Path) -> None:
    config = tmp_path / "mission-control.toml"
    config.write_text(f'[target]\npath = "{tmp_path}"\n[state]\ndir = "{tmp_path / "state"}"\n')
    md = tmp_path / "b.md"
    md.write_text("- [ ] First | track=tests impact=2 effort=2\n- [ ] Second | impact=5 effort=1\n")
    run = CliRunner(env={"COLUMNS": "250"}).invoke
    assert "backlog is empty" in run(cli, ["priority", "list", "--config", str(config)]).output
    out = run(cli, ["priority", "import", str(md), "--config", str(config)])
    assert out.exit_code == 0 and "2 new, 0 updated" in out.output
    assert run(cli, ["priority", "set", "1", "7.5", "--config", str(config)]).exit_code == 0
    assert run(cli, ["priority", "defer", "2", "--config", str(config)]).exit_code == 0
    assert run(cli, ["priority", "recalc", "--config", str(config)]).exit_code == 0
    listing = run(cli, ["priority", "list", "--config", str(config)]).output
    assert "7.50*" in listing and "deferred" in listing
    exported = run(cli, ["priority", "export", "--config", str(config)]).output
    assert "- [ ] First | track=tests impact=2 effort=2 id=1 score=7.5" in exported
    assert "- [~] Second" in exported
    bad = run(cli, ["priority", "defer", "9", "--config", str(config)])
    assert bad.exit_code == 1 and "no backlog item #9" in bad.output
    md.write_text("- [ ] X | impact=0\n")
    bad = run(cli, ["priority", "import", str(md), "--config", str(config)])
    assert bad.exit_code == 2 and "line 1" in bad.output
