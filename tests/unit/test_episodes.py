"""Episodic memory on a real SQLite store: FTS5/BM25 recall, threshold, decay, budget,
pruning and forgetting (engine/learning/episodes.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.learning import episodes
from engine.store import Store

DAY = 86400.0
NOW = 1_800_000_000.0


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "mission.db")


def add(store: Store, key: str, title: str, files: list[str], reason: str = "", *,
        age_days: float = 0.0, outcome: str = "failed", max_episodes: int = 100) -> None:
    episodes.record(
        store, kind="unit", key=key, mission_id=1, unit_id=key, objective="Improve the service",
        title=title, files=files, outcome=outcome, failure_reason=reason, review_feedback="",
        fixups="1 attempt(s)", cost_usd=0.1, max_episodes=max_episodes,
        now=NOW - age_days * DAY,
    )


def seed(store: Store) -> None:
    add(store, "a", "Write the changelog entry", ["CHANGELOG.md"], outcome="merged")
    add(store, "b", "Add retry to the HTTP client", ["src/http/client.py"],
        "verification failed: src/http/client.py lacks the SPDX license header")
    add(store, "c", "Document the CLI flags", ["docs/cli.md"], outcome="merged")
    add(store, "d", "Rename database helpers", ["src/db/helpers.py"],
        "review: helpers must use snake_case names")


def test_recall_ranks_the_relevant_episode_first(store: Store) -> None:
    seed(store)
    found = episodes.recall(store, "Add timeouts to the HTTP client in src/http/client.py",
                            threshold=0.0, half_life_days=30, now=NOW)
    assert found[0].episode["id"] == "unit:b"
    assert "SPDX license header" in found[0].lesson
    assert found[0].relevance > max(r.relevance for r in found[1:] or [episodes.Recalled({}, 0, 0)])


def test_threshold_filters_weak_matches(store: Store) -> None:
    seed(store)
    query = "Add timeouts to the HTTP client; update docs"
    loose = episodes.recall(store, query, threshold=0.0, half_life_days=0, now=NOW)
    strict = episodes.recall(store, query, threshold=0.3, half_life_days=0, now=NOW)
    assert {r.episode["id"] for r in loose} >= {"unit:b", "unit:c"}
    assert [r.episode["id"] for r in strict] == ["unit:b"]
    assert all(r.score >= 0.3 for r in strict)
    assert episodes.recall(store, "kubernetes helm chart", threshold=0.0, half_life_days=0,
                           now=NOW) == []


def test_age_decay_halves_the_score_per_half_life(store: Store) -> None:
    add(store, "old", "Fix the parser tokenizer", ["src/parser.py"], "tokenizer crash",
        age_days=30)
    add(store, "new", "Fix the parser tokenizer", ["src/parser.py"], "tokenizer crash")
    found = episodes.recall(store, "parser tokenizer", threshold=0.0, half_life_days=30, now=NOW)
    by_id = {r.episode["id"]: r for r in found}
    assert [r.episode["id"] for r in found] == ["unit:new", "unit:old"]
    assert by_id["unit:old"].score == pytest.approx(by_id["unit:new"].score / 2, rel=1e-3)
    # a threshold between the two drops the old one only
    kept = episodes.recall(store, "parser tokenizer", threshold=0.7, half_life_days=30, now=NOW)
    assert [r.episode["id"] for r in kept] == ["unit:new"]


def test_max_episodes_keeps_the_newest(store: Store) -> None:
    for i in range(5):
        add(store, f"u{i}", f"Unit {i} about caching", ["src/cache.py"], age_days=10 - i,
            max_episodes=3)
    assert [r["id"] for r in episodes.list_episodes(store)] == ["unit:u4", "unit:u3", "unit:u2"]
    # the FTS index follows the table (triggers): pruned episodes are not found
    found = episodes.recall(store, "caching", threshold=0.0, half_life_days=0, now=NOW)
    assert {r.episode["id"] for r in found} == {"unit:u2", "unit:u3", "unit:u4"}


def test_recording_again_replaces_the_episode(store: Store) -> None:
    add(store, "x", "Add a farewell", ["app/bye.py"], "first reason")
    add(store, "x", "Add a farewell", ["app/bye.py"], "second reason")
    rows = episodes.list_episodes(store)
    assert len(rows) == 1 and rows[0]["failure_reason"] == "second reason"
    assert episodes.recall(store, "first", threshold=0.0, half_life_days=0, now=NOW) == []


def test_the_token_budget_is_respected() -> None:
    lines = [f"lesson {i} " + "x" * 90 for i in range(10)]  # ~103 chars each
    kept = episodes.within_budget(lines, 100)  # 400 characters
    assert kept == lines[:3]
    assert sum(len(line) + 3 for line in kept) <= 400
    assert episodes.within_budget(lines, 0) == []


def test_forget_one_and_all(store: Store) -> None:
    seed(store)
    assert episodes.forget(store, "unit:b") == 1
    assert episodes.forget(store, "unit:b") == 0
    found = episodes.recall(store, "HTTP client SPDX", threshold=0.0, half_life_days=0, now=NOW)
    assert "unit:b" not in {r.episode["id"] for r in found}
    assert episodes.forget(store) == 3
    assert episodes.list_episodes(store) == []


def test_secrets_never_reach_the_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-very-secret-value-123")
    store = Store(tmp_path / "m.db")
    add(store, "s", "Call the API", ["src/api.py"], "auth failed with sk-ant-very-secret-value-123")
    row = episodes.list_episodes(store)[0]
    assert "sk-ant-very-secret-value-123" not in row["failure_reason"] + row["lesson"]
