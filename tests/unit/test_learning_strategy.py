"""Prompt evolution (Thompson sampling over template variants) and causal attribution
(Wilson intervals, stratified effects) on a real store."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest
from llm_fakes import Canned

from engine.learning import attribution, decisions
from engine.learning.attribution import effects, strongest, wilson
from engine.learning.prompt_evolution import PromptVariants, check_variant, shipped_text
from engine.prompts import PromptError
from engine.store import Store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "mc.db")


def variant_of(role: str, extra: str) -> str:
    return shipped_text(role) + f"\n\n{extra}\n"


def test_wilson_interval_known_values() -> None:
    # Agresti & Coull (1998) / Newcombe (1998) worked values, z = 1.96
    low, high = wilson(5, 10)
    assert (round(low, 3), round(high, 3)) == (0.237, 0.763)
    low, high = wilson(0, 10)
    assert low == 0.0 and round(high, 3) == 0.278
    low, high = wilson(10, 10)
    assert round(low, 3) == 0.722 and high == pytest.approx(1.0)
    assert wilson(0, 0) == (0.0, 1.0)


def test_thompson_sampling_is_seeded_and_finds_the_better_variant(store: Store) -> None:
    pv = PromptVariants(store, seed=7)
    good = pv.add("worker", "good", variant_of("worker", "Run the tests before you finish."))
    assert good is not None
    true_rate = {"shipped": 0.2, "good": 0.8}
    import random

    world = random.Random(1)
    picks = []
    for _ in range(200):
        v = pv.choose("worker")
        picks.append(v.name)
        ok = world.random() < true_rate[v.name]
        store.conn.execute(f"UPDATE prompt_variants SET {'successes' if ok else 'failures'} = "
                           f"{'successes' if ok else 'failures'} + 1 WHERE id = ?", (v.id,))
    assert picks[-50:].count("good") >= 45  # exploitation of the better arm
    assert picks.count("shipped") >= 3  # ... after exploring the other
    # the same seed on the same counts makes the same choices
    again = [PromptVariants(store, seed=3).choose("worker").name for _ in range(5)]
    assert again == [PromptVariants(store, seed=3).choose("worker").name for _ in range(5)]
    best = pv.best("worker")
    assert best.name == "good" and best.posterior_mean > 0.7


def test_a_variant_must_keep_the_placeholders(store: Store, tmp_path: Path) -> None:
    with pytest.raises(PromptError, match="missing \\['unit_title'\\]"):
        check_variant("worker", shipped_text("worker").replace("$unit_title", "the unit"))
    with pytest.raises(PromptError, match="unknown \\['bogus'\\]"):
        check_variant("worker", shipped_text("worker") + "$bogus")
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "worker.terse.md").write_text(variant_of("worker", "Be terse."))
    (tmp_path / "v" / "worker.bad.md").write_text("no placeholders")
    (tmp_path / "v" / "notarole.x.md").write_text("x")
    problems = PromptVariants(store).load_dir(tmp_path / "v")
    assert len(problems) == 2 and any("worker.bad.md" in p for p in problems)
    assert {v.name for v in PromptVariants(store).variants("worker")} == {"shipped", "terse"}


def test_mutation_after_enough_samples(store: Store) -> None:
    pv = PromptVariants(store, seed=1)
    pv.ensure_shipped("worker")
    ask = Canned(json.dumps({"template": variant_of("worker", "Check the acceptance criteria twice.")}))
    assert anyio.run(lambda: pv.mutate(ask, "worker", min_samples=3, max_variants=3)) is None
    assert ask.calls == []  # not enough samples yet
    store.conn.execute("UPDATE prompt_variants SET successes = 2, failures = 1")
    new = anyio.run(lambda: pv.mutate(ask, "worker", min_samples=3, max_variants=3,
                                      evidence="- Add x: review 3/10"))
    assert new is not None
    role, prompt = ask.calls[0]
    assert role == "planner" and "$unit_title" in prompt and "review 3/10" in prompt
    child = [v for v in pv.variants("worker") if v.id == new][0]
    assert "twice" in (child.body or "")
    bad = Canned(json.dumps({"template": "drops every placeholder"}))
    store.conn.execute("UPDATE prompt_variants SET successes = 9")
    assert anyio.run(lambda: pv.mutate(bad, "worker", min_samples=3, max_variants=5)) is None
    assert len(pv.variants("worker")) == 2


def _mission_with_units(store: Store, units: list[dict]) -> int:
    mid = store.insert("missions", {"objective": "o", "status": "running", "started_at": 0})
    for u in units:
        store.insert("units", {"mission_id": mid, "created_at": 0, "updated_at": 0,
                               "status": "ready", **u})
    return mid


def test_decisions_record_and_settle(store: Store) -> None:
    mid = _mission_with_units(store, [
        {"id": "p", "title": "parent", "is_leaf": 0},
        {"id": "a", "title": "A", "parent_id": "p", "files_hint": ["x.py", "y.py"]},
        {"id": "b", "title": "B", "parent_id": "p", "files_hint": ["y.py"], "specialist": "test_writer"},
        {"id": "c", "title": "C", "parent_id": "p", "files_hint": ["z.py"]},
    ])
    pv = PromptVariants(store, seed=0)
    pv.ensure_shipped("worker")
    vid = pv.variants("worker")[0].id
    for uid in "abc":
        decisions.record(store, store.get("units", uid), model="sonnet", two_pass=False,
                         prompt_variant="worker:shipped", prompt_variant_id=vid)
    decisions.record(store, store.get("units", "a"), model="opus", two_pass=True)  # kept first
    rows = {r["unit_id"]: r["factors"] for r in store.rows("decisions", order="unit_id")}
    assert rows["a"] == {"specialist": "general", "model": "sonnet", "two_pass": "no", "depth": "2",
                         "prompt_variant": "worker:shipped", "overlap": "yes", "size": "2-3"}
    assert rows["c"]["overlap"] == "no" and rows["b"]["specialist"] == "test_writer"
    store.conn.execute("UPDATE units SET status = 'merged', review_score = 8 WHERE id = 'a'")
    store.conn.execute("UPDATE units SET status = 'merged', review_score = 8, fixup_rounds = 1 "
                       "WHERE id = 'b'")
    settled = decisions.settle(store, mid, 6.0)
    assert {r["unit_id"]: r["success"] for r in settled} == {"a": 1, "b": 0}  # c is not final
    assert decisions.settle(store, mid, 6.0) == []  # idempotent
    v = pv.variants("worker")[0]
    assert (v.successes, v.failures) == (1, 1)


def test_effects_and_strong_findings() -> None:
    data = ([({"two_pass": "yes", "size": "1"}, 1)] * 9 + [({"two_pass": "yes", "size": "1"}, 0)]
            + [({"two_pass": "no", "size": "1"}, 0)] * 8 + [({"two_pass": "no", "size": "1"}, 1)] * 2)
    found = {(e.factor, e.level): e for e in effects(data)}
    yes = found[("two_pass", "yes")]
    assert (yes.n, yes.successes, yes.rest_n) == (10, 9, 10)
    assert round(yes.effect, 2) == 0.7 and round(yes.stratified or 0, 2) == 0.7
    assert yes.strong and ("size", "1") not in found  # one level: nothing to compare
    (top,) = strongest(list(found.values()), 1)
    assert top.level in ("yes", "no") and abs(top.effect) == pytest.approx(0.7)
    assert "9/10 succeeded (90%, 95% CI 60%-98%)" in yes.sentence()
    weak = effects(data[:3] + data[-3:])
    assert not any(e.strong for e in weak)  # too few units


def test_stratification_removes_a_confounder() -> None:
    # two_pass is only used on small units, and small units succeed more: within each size
    # stratum two_pass makes no difference.
    data = ([({"two_pass": "yes", "size": "1"}, 1)] * 8 + [({"two_pass": "yes", "size": "1"}, 0)] * 2
            + [({"two_pass": "no", "size": "1"}, 1)] * 4 + [({"two_pass": "no", "size": "1"}, 0)]
            + [({"two_pass": "no", "size": "4+"}, 1)] * 2 + [({"two_pass": "no", "size": "4+"}, 0)] * 8)
    yes = next(e for e in effects(data) if e.factor == "two_pass" and e.level == "yes")
    assert yes.effect > 0.3 and yes.stratified is not None and abs(yes.stratified) < 1e-9


def test_report_section(store: Store) -> None:
    mid = _mission_with_units(store, [{"id": f"u{i}", "title": str(i)} for i in range(12)])
    for i in range(12):
        unit = store.get("units", f"u{i}")
        decisions.record(store, unit, model="opus" if i < 6 else "haiku", two_pass=False)
        store.conn.execute("UPDATE units SET status = ? WHERE id = ?",
                           ("merged" if i < 6 else "failed", f"u{i}"))
    decisions.settle(store, mid, 6.0)
    section = attribution.report(store)
    assert section["units"] == 12 and section["successes"] == 6
    assert section["strong"][0].startswith("model = haiku: 0/6 succeeded")


def test_the_planner_is_told_the_strongest_findings(store: Store) -> None:
    from types import SimpleNamespace

    from engine.config import MissionConfig
    from engine.learning.plugins import AttributionConfig, AttributionPlugin

    mid = _mission_with_units(store, [{"id": f"u{i}", "title": str(i)} for i in range(12)])
    plugin = AttributionPlugin(AttributionConfig(), MissionConfig())
    rt = SimpleNamespace(store=store)
    assert plugin.planning_notes(rt) == []  # nothing known yet
    for i in range(12):
        decisions.record(store, store.get("units", f"u{i}"), model="opus" if i < 6 else "haiku",
                         two_pass=False)
        store.conn.execute("UPDATE units SET status = ? WHERE id = ?",
                           ("merged" if i < 6 else "failed", f"u{i}"))
    decisions.settle(store, mid, 6.0)
    notes = plugin.planning_notes(rt)
    assert len(notes) == 2 and notes[0].startswith("Outcome attribution (earlier units): model = ")
    assert "6/6 succeeded" in "\n".join(notes) and "0/6 succeeded" in "\n".join(notes)
    assert AttributionPlugin(AttributionConfig(findings=0), MissionConfig()).planning_notes(rt) == []
