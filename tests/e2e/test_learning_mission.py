"""A real scripted mission with prompt evolution and attribution on: the worker gets the
variant Thompson sampling chose (the cassette only answers that prompt), its outcome is
counted on the variant, `mc prompts` and `mc report` show it."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from engine.prompts import PROMPTS_DIR
from engine.store import Store
from tests.e2e.conftest import (
    AMBITION_OK,
    OBJECTIVE_MET,
    plan_entry,
    run_mc,
    worker_entry,
    write_config,
)

pytestmark = pytest.mark.slow

MARK = "VARIANT-7F3A: state the acceptance criteria back before you edit."


def first_seed_choosing_the_variant() -> int:
    """The sampler draws Beta(1,1) for `shipped` (id 1) then for the variant (id 2)."""
    for seed in range(100):
        rng = random.Random(seed)
        if rng.betavariate(1, 1) < rng.betavariate(1, 1):
            return seed
    raise AssertionError("no seed")


def test_variant_is_used_counted_and_reported(target: Path) -> None:
    variants = target / "variants"
    variants.mkdir()
    (variants / "worker.restate.md").write_text((PROMPTS_DIR / "worker.md").read_text()
                                                + f"\n{MARK}\n")
    cassette = (plan_entry("Add a farewell", "app/bye.py") + AMBITION_OK + OBJECTIVE_MET
                + worker_entry("Add a farewell", "app/bye.py", "def bye():\\n    return 'bye'\\n",
                               extra='match = "VARIANT-7F3A"'))
    seed = first_seed_choosing_the_variant()
    config = write_config(target, cassette, f'[plugins.prompt_evolution]\nseed = {seed}\n'
                                            f'variants_dir = "{variants}"\n')
    result = run_mc("mission", "--config", str(config), "--no-ui")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    store = Store(target / "repo" / ".git" / "mc" / "mission.db")
    (row,) = store.rows("decisions", order="unit_id")
    assert row["factors"]["prompt_variant"] == "worker:restate" and row["success"] == 1
    assert row["factors"]["model"] and row["factors"]["two_pass"] == "no"
    counts = {r["name"]: (r["successes"], r["failures"]) for r in store.rows("prompt_variants")}
    assert counts == {"shipped": (0, 0), "restate": (1, 0)}
    listing = run_mc("prompts", "--config", str(config), env={"COLUMNS": "200"})
    assert listing.returncode == 0
    assert "restate" in listing.stdout and "0.667" in listing.stdout  # (1 + 1) / (1 + 2)
    out = target / "report.json"
    report = run_mc("report", "--config", str(config), "-o", str(out))
    assert report.returncode == 0, report.stderr
    section = json.loads(out.read_text())["attribution"]
    assert section["units"] == 1 and section["successes"] == 1
    assert "no factor with two levels" in report.stdout
