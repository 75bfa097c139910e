"""Missions on real repositories with their mess: sparse checkouts and sparse indexes,
``extensions.worktreeConfig``, submodules, git-ignored files the tests need.

Each runs ``mc --no-ui`` with the scripted backend on a small real repository and checks
what lands on ``mc/green``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import (
    AMBITION_OK,
    OBJECTIVE_MET,
    git,
    plan_entry,
    run_mc,
    worker_entry,
    write_config,
)

pytestmark = pytest.mark.slow

REVIEW_PASSES = '''
[[interaction]]
role = "reviewer"
actions = [{ type = "text", text = '{"alignment": 9, "approach": 8, "tests": 8, "feedback": "good"}' }]
'''


def farewell_mission(target: Path, extra: str = "") -> Path:
    """A one-unit mission (review gate on) that adds app/bye.py."""
    cassette = (
        plan_entry("Add a farewell", "app/bye.py") + AMBITION_OK + OBJECTIVE_MET + REVIEW_PASSES
        + worker_entry("Add a farewell", "app/bye.py", "def bye():\\n    return 'bye'\\n")
    )
    return write_config(target, cassette, "[review]\ngate_completion = true\n" + extra)


@pytest.mark.parametrize("setup", [
    ["sparse-checkout", "set", "--sparse-index", "app"],
    ["sparse-checkout", "set", "--no-cone", "/app/"],
    ["config", "extensions.worktreeConfig", "true"],
], ids=["sparse-index", "sparse-checkout", "worktree-config"])
def test_mission_on_a_sparse_checkout(target: Path, setup: list[str]) -> None:
    repo = target / "repo"
    git(repo, *setup)
    if "--sparse-index" in setup:
        assert "sdir" in (repo / ".git" / "index").read_bytes().decode("latin-1")
    status_before = git(repo, "status", "--porcelain")
    config = farewell_mission(target)
    result = run_mc("--config", str(config), "--no-ui")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "app/bye.py" in git(repo, "ls-tree", "-r", "--name-only", "mc/green")
    assert git(repo, "status", "--porcelain") == status_before
