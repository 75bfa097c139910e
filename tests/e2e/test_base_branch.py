"""Which branch mc/green starts from when ``target.branch`` is not set, and what a user is
told when it cannot be found: through the CLI (``mc validate-config``, ``mc --no-ui``) on
real repositories."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import load_config
from engine.gitops import GitRepo
from engine.gitops.branches import apply_base_branch
from tests.e2e.conftest import (
    AMBITION_OK,
    OBJECTIVE_MET,
    git,
    make_target,
    plan_entry,
    run_mc,
    worker_entry,
    write_config,
)


def config_for(root: Path, repo: Path, extra: str = "") -> Path:
    """A config on ``repo`` with the scripted backend (so ``mc --no-ui`` gets to the repo)."""
    (root / "empty.toml").write_text("")
    path = root / "mission-control.toml"
    path.write_text(f'[target]\npath = "{repo}"\nobjective = "x"\n{extra}'
                    '\n[agent]\nbackend = "scripted"\ncassette = "empty.toml"\n')
    return path


def mc(*args: str) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of ``mc ARGS`` with line wrapping undone."""
    out = run_mc(*args)
    return out.returncode, " ".join(out.stdout.split()), " ".join(out.stderr.split())


@pytest.fixture
def cloned(tmp_path: Path) -> Path:
    """A clone whose remote's default branch is ``develop``; the user is on ``feature``."""
    upstream = make_target(tmp_path / "up")
    git(upstream, "branch", "develop")
    git(upstream, "branch", "release")
    git(upstream, "checkout", "-q", "develop")
    git(tmp_path, "clone", "-q", str(upstream), "clone")
    clone = tmp_path / "clone"
    git(clone, "checkout", "-q", "-b", "feature")
    return clone


def test_the_remote_default_branch_is_the_base(cloned: Path, tmp_path: Path) -> None:
    code, out, err = mc("validate-config", "--config", str(config_for(tmp_path, cloned)))
    assert code == 0, err
    assert "branch develop" in out and "origin/HEAD" in out
    config = load_config(config_for(tmp_path, cloned))
    assert apply_base_branch(config, GitRepo(cloned)).name == "develop"
    assert config.green_branch.push_branch == "develop"  # pushed back where it came from
    explicit = load_config(config_for(tmp_path, cloned, '\n[green_branch]\npush_branch = "x"\n'))
    apply_base_branch(explicit, GitRepo(cloned))
    assert explicit.green_branch.push_branch == "x"


def test_a_branch_only_on_the_remote_says_how_to_base_on_it(cloned: Path, tmp_path: Path) -> None:
    code, _, err = mc("validate-config", "--config",
                      str(config_for(tmp_path, cloned, 'branch = "release"\n')))
    assert code == 2, err
    assert "branch 'release' (target.branch) not found" in err
    assert "local branches: develop, feature" in err
    assert "git branch release origin/release" in err
    code, _, err = mc("--no-ui", "--config", str(config_for(tmp_path, cloned, 'branch = "nope"\n')))
    assert code == 2
    assert "origin/nope does not exist either" in err and "set target.branch" in err


def test_the_remote_default_missing_locally_is_named(cloned: Path, tmp_path: Path) -> None:
    git(cloned, "branch", "-q", "-D", "develop")
    code, _, err = mc("--no-ui", "--config", str(config_for(tmp_path, cloned)))
    assert code == 2
    assert "branch 'develop' (origin/HEAD, the remote's default) not found" in err
    assert "git branch develop origin/develop" in err


def test_without_a_remote_the_current_branch_is_the_base(tmp_path: Path) -> None:
    repo = make_target(tmp_path)
    git(repo, "branch", "-m", "main", "master")
    code, out, err = mc("validate-config", "--config", str(config_for(tmp_path, repo)))
    assert code == 0, err
    assert "branch master" in out and "current branch" in out
    git(repo, "checkout", "-q", "--detach")
    code, _, err = mc("validate-config", "--config", str(config_for(tmp_path, repo)))
    assert code == 2
    assert "HEAD is detached" in err and "local branches: master" in err


def test_an_unborn_repository_says_it_has_no_commits(tmp_path: Path) -> None:
    repo = tmp_path / "empty"
    repo.mkdir()
    git(repo, "init", "-q")
    for args in (["validate-config"], ["--no-ui"]):
        code, out, err = mc(*args, "--config", str(config_for(tmp_path, repo)))
        assert code == 2, out
        assert "has no commits yet" in err and "git commit --allow-empty" in err


@pytest.mark.slow
def test_a_mission_on_master_without_a_branch_setting(tmp_path: Path) -> None:
    repo = make_target(tmp_path)
    git(repo, "branch", "-m", "main", "master")
    config = write_config(
        tmp_path,
        plan_entry("Add a farewell", "app/bye.py") + AMBITION_OK + OBJECTIVE_MET
        + worker_entry("Add a farewell", "app/bye.py", "def bye():\\n    return 'bye'\\n"),
    )
    config.write_text(config.read_text().replace('branch = "main"\n', ""))
    result = run_mc("--config", str(config), "--no-ui")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "app/bye.py" in git(repo, "ls-tree", "-r", "--name-only", "mc/green")
    assert git(repo, "merge-base", "--is-ancestor", "master", "mc/green") == ""
