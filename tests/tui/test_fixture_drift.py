"""The TUI's written fixtures cannot drift from what the engine emits.

The frozen mission of the snapshots (``tests/support/tui_world.py``) and the benchmark's load
generator (``benchmarks/tui_load.py``) write events themselves. Each kind they write must be
one the engine emits (read from the engine's source), and each payload may only carry keys
that the same kind carries in a real run: the real pipeline with scripted agents, a push
gate that times out (so approvals, pushes, verifications, merges, costs all happen).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections import defaultdict
from pathlib import Path

import anyio
import pytest

from engine.store import Store
from tests.support.event_kinds import documented_kinds, emitted_kinds
from tests.support.scripted_mission import scripted_mission
from tests.support.tui_world import SyntheticMission

ROOT = Path(__file__).resolve().parents[2]


def shapes(store: Store) -> dict[str, set[str]]:
    """{kind: union of its payload keys} over every event in ``store``."""
    out: dict[str, set[str]] = defaultdict(set)
    for row in store.query("SELECT kind, payload FROM events"):
        out[row["kind"]].update(json.loads(row["payload"] or "{}"))
    return dict(out)


@pytest.fixture(scope="module")
def real_shapes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    mission = scripted_mission(tmp_path_factory.mktemp("real"), units=2, push_gate=True,
                               approval_timeout=0.3)
    try:
        code = anyio.run(mission.engine)
        assert code == 3, "the push gate expired: objective met, not pushed"
        return shapes(mission.store)
    finally:
        mission.store.close()


def drift(written: dict[str, set[str]], real: dict[str, set[str]]) -> dict[str, set[str]]:
    """{kind: keys the fixture writes that the real run never did} for kinds both have."""
    return {kind: keys - real[kind] for kind, keys in written.items()
            if kind in real and keys - real[kind]}


def test_the_frozen_world_writes_engine_kinds_with_engine_payloads(tmp_path: Path,
                                                                   real_shapes) -> None:
    store = Store(tmp_path / "m.db")
    SyntheticMission(store, repo=tmp_path / "repo").write()
    written = shapes(store)
    store.close()
    engine_kinds, _ = emitted_kinds()
    assert set(written) - set(engine_kinds) == set()
    assert drift(written, real_shapes) == {}
    # enough of it is compared against the real run to mean something
    assert {"unit.status", "merge.status", "attempt.started", "agent.event", "cost",
            "approval.requested", "verification.started"} <= set(written) & set(real_shapes)


def test_the_bench_load_writes_engine_kinds_with_engine_payloads(tmp_path: Path, real_shapes) -> None:
    spec = importlib.util.spec_from_file_location("tui_load", ROOT / "benchmarks" / "tui_load.py")
    assert spec is not None and spec.loader is not None
    tui_load = importlib.util.module_from_spec(spec)
    sys.modules["tui_load"] = tui_load
    spec.loader.exec_module(tui_load)
    store = Store(tmp_path / "m.db")
    mid = store.insert("missions", {"objective": "x", "status": "running", "started_at": 0.0},
                       event="mission.created")
    assert tui_load.write_load(store, mid, rate=5000, seconds=0.1) > 0
    written = shapes(store)
    store.close()
    assert set(written) <= set(real_shapes)
    assert drift(written, real_shapes) == {}


def test_drift_is_reported(real_shapes) -> None:
    """The comparison itself: an invented key on a real kind is drift."""
    assert drift({"unit.status": {"id", "from", "to", "made_up"}}, real_shapes) == {
        "unit.status": {"made_up"}}


def test_every_kind_a_real_run_emits_is_documented(real_shapes) -> None:
    """The dynamic half of tests/unit/test_event_kinds_documented.py: what a real scripted
    mission wrote, not only what the source names."""
    assert set(real_shapes) - documented_kinds() == set()
