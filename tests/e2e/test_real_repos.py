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
    ["config", "core.sparseCheckout", "true"],  # the old way: shared by every worktree
    ["config", "core.splitIndex", "true"],
], ids=["sparse-index", "sparse-checkout", "worktree-config", "legacy-sparse", "split-index"])
def test_mission_on_a_sparse_checkout(target: Path, setup: list[str]) -> None:
    repo = target / "repo"
    git(repo, *setup)
    if setup[1] == "core.sparseCheckout":
        (repo / ".git" / "info" / "sparse-checkout").write_text("/app/\n")
        git(repo, "read-tree", "-mu", "HEAD")
        assert not (repo / "tests").exists()
    if setup[1] == "core.splitIndex":
        git(repo, "update-index", "--split-index")
    if "--sparse-index" in setup:
        assert "sdir" in (repo / ".git" / "index").read_bytes().decode("latin-1")
    status_before = git(repo, "status", "--porcelain")
    config = farewell_mission(target)
    result = run_mc("--config", str(config), "--no-ui")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "app/bye.py" in git(repo, "ls-tree", "-r", "--name-only", "mc/green")
    assert git(repo, "status", "--porcelain") == status_before


def add_submodule(target: Path) -> Path:
    """Give the target a submodule ``lib`` whose code its tests import; the submodule's
    upstream is deleted afterwards, so only the user's own clone (.git/modules/lib) has it."""
    repo = target / "repo"
    libsrc = target / "libsrc"
    libsrc.mkdir()
    git(libsrc, "init", "-q", "-b", "main")
    (libsrc / "helper.py").write_text("def helper():\n    return 42\n")
    git(libsrc, "add", "-A")
    git(libsrc, "commit", "-q", "-m", "lib")
    git(repo, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(libsrc), "lib")
    (repo / "tests" / "test_lib.py").write_text(
        "import unittest\n\nfrom lib.helper import helper\n\n\n"
        "class LibTest(unittest.TestCase):\n"
        "    def test_helper(self):\n        self.assertEqual(helper(), 42)\n"
    )
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "use lib")
    import shutil

    shutil.rmtree(libsrc)
    return repo


def test_a_mission_keeps_a_submodule_the_tests_import(target: Path) -> None:
    repo = add_submodule(target)
    config = farewell_mission(target)
    result = run_mc("--config", str(config), "--no-ui")
    assert result.returncode == 0, result.stdout + result.stderr
    assert git(repo, "ls-tree", "mc/green", "lib").startswith("160000 commit")
    assert "app/bye.py" in git(repo, "ls-tree", "-r", "--name-only", "mc/green")
    assert git(repo, "status", "--porcelain") == ""


def test_an_agent_deleting_a_submodule_is_rejected_before_review(target: Path) -> None:
    repo = add_submodule(target)
    cassette = plan_entry("Add a farewell", "app/bye.py") + AMBITION_OK + OBJECTIVE_MET + '''
[[interaction]]
role = "worker"
actions = [
  { type = "write", path = "app/bye.py", content = "def bye():\\n    return 'bye'\\n" },
  { type = "run", command = "git rm -q --cached lib && rm -rf lib && git add -A && git -c user.name=a -c user.email=a@localhost commit -q -m 'farewell (and lib lost)'" },
]
'''
    config = write_config(target, cassette, "[review]\nmax_review_retries = 0\n")
    result = run_mc("--config", str(config), "--no-ui")
    assert result.returncode != 0, result.stdout
    from engine.store import Store

    store = Store(repo / ".git" / "mc" / "mission.db")
    units = store.query("SELECT status, reason, review_feedback FROM units")
    assert units and all(u["status"] == "failed" for u in units)
    assert "deletes the submodule lib" in units[0]["reason"]
    assert "deletes the submodule lib" in units[0]["review_feedback"]
    assert git(repo, "ls-tree", "mc/green", "lib").startswith("160000 commit")


def add_dotenv(target: Path) -> Path:
    """A git-ignored ``.env`` in the user's checkout that the tests read."""
    repo = target / "repo"
    (repo / ".gitignore").write_text(".env\n")
    (repo / ".env").write_text("GREETING=hello\n")
    (repo / "tests" / "test_env.py").write_text(
        "import unittest\nfrom pathlib import Path\n\n\n"
        "class EnvTest(unittest.TestCase):\n"
        "    def test_env(self):\n"
        "        self.assertIn('GREETING=hello', Path('.env').read_text())\n"
    )
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "tests read .env")
    assert git(repo, "status", "--porcelain", "--ignored") == "!! .env"
    return repo


@pytest.mark.parametrize("how", ["config", "worktreeinclude"])
def test_a_mission_whose_tests_read_an_ignored_env_file(target: Path, how: str) -> None:
    repo = add_dotenv(target)
    extra = '[worktree]\ninclude = [".env"]\n'
    if how == "worktreeinclude":
        (repo / ".worktreeinclude").write_text(".env\n")  # untracked: the user's own choice
        extra = ""
    result = run_mc("--config", str(farewell_mission(target, extra)), "--no-ui")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "merges: promoted 1" in result.stdout
    assert ".env" not in git(repo, "ls-tree", "-r", "--name-only", "mc/green")


def test_an_agent_committing_an_included_file_is_rejected_before_review(target: Path) -> None:
    repo = add_dotenv(target)
    cassette = plan_entry("Add a farewell", "app/bye.py") + AMBITION_OK + OBJECTIVE_MET + '''
[[interaction]]
role = "worker"
actions = [
  { type = "write", path = "app/bye.py", content = "def bye():\\n    return 'bye'\\n" },
  { type = "run", command = "git add -f .env app && git -c user.name=a -c user.email=a@localhost commit -q -m leak" },
]
'''
    config = write_config(target, cassette,
                          '[review]\nmax_review_retries = 0\n[worktree]\ninclude = [".env"]\n')
    result = run_mc("--config", str(config), "--no-ui")
    assert result.returncode != 0, result.stdout
    from engine.store import Store

    store = Store(repo / ".git" / "mc" / "mission.db")
    reasons = [u["reason"] for u in store.query("SELECT reason FROM units")]
    assert reasons and all("commits .env" in r for r in reasons)
    assert ".env" not in git(repo, "ls-tree", "-r", "--name-only", "mc/green")


def test_an_agent_committing_inside_a_submodule_is_rejected_before_review(target: Path) -> None:
    repo = add_submodule(target)
    ident = "-c user.name=a -c user.email=a@localhost"
    cassette = plan_entry("Add a farewell", "app/bye.py") + AMBITION_OK + OBJECTIVE_MET + f'''
[[interaction]]
role = "worker"
actions = [
  {{ type = "write", path = "lib/extra.py", content = "X = 1\\n" }},
  {{ type = "run", command = "cd lib && git add -A && git {ident} commit -q -m extra && cd .. && git add lib && git {ident} commit -q -m 'move lib'" }},
]
'''
    config = write_config(target, cassette, "[review]\nmax_review_retries = 0\n")
    result = run_mc("--config", str(config), "--no-ui")
    assert result.returncode != 0, result.stdout
    from engine.store import Store

    store = Store(repo / ".git" / "mc" / "mission.db")
    reasons = [u["reason"] for u in store.query("SELECT reason FROM units")]
    assert reasons and all("exists only in this worktree" in r for r in reasons)
    assert store.query("SELECT COUNT(*) AS n FROM verifications WHERE status = 'error'")[0]["n"] == 0
