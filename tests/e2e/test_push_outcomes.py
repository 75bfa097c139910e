"""Push outcomes: a remote that moved during the mission is merged (verified) and pushed before
the mission ends; a push that cannot be made is an outcome of its own with exit code 3.

Real temp repositories: a local bare remote with a second clone that pushes while an agent
works, and a non-bare remote with the branch checked out (it rejects every push).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from engine.store import Store
from mc_tui.exit_codes import EXIT_NOT_PUSHED
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

PUSH = '[green_branch]\nauto_push = true\n[hitl]\nenabled = false\n'


def store_of(root: Path) -> Store:
    return Store(root / "repo" / ".git" / "mc" / "mission.db")


def pushes(store: Store) -> list[dict]:
    return [json.loads(r["payload"]) for r in store.query(
        "SELECT payload FROM events WHERE kind = 'push.result' ORDER BY id")]


def bare_origin(root: Path) -> Path:
    origin = root / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], check=True)
    git(root / "repo", "remote", "add", "origin", str(origin))
    git(root / "repo", "push", "-q", "origin", "main")
    return origin


def racing_worker(root: Path, origin: Path, path: str, content: str) -> str:
    """A worker that, while it works, lets someone else push REMOTE.txt (or ``path``) to origin."""
    other = root / "other"
    subprocess.run(["git", "clone", "-q", "--branch", "main", str(origin), str(other)], check=True)
    theirs = "REMOTE.txt" if path != "app/bye.py" else "app/bye.py"
    race = (
        f"cd {other} && printf 'theirs\\\\n' > {theirs} && git add -A && "
        "git -c user.name=o -c user.email=o@x commit -qm 'a commit from someone else' && "
        "git push -q origin HEAD:main"
    )
    return f'''
[[interaction]]
role = "worker"
when = {{ unit_title = "Add a farewell" }}
actions = [
  {{ type = "run", command = "{race}" }},
  {{ type = "write", path = "{path}", content = "{content}" }},
  {{ type = "commit", message = "Add a farewell" }},
]
'''


def test_remote_moved_and_objective_met_in_the_same_epoch_is_still_pushed(target: Path) -> None:
    origin = bare_origin(target)
    cassette = (plan_entry("Add a farewell", "app/bye.py") + AMBITION_OK + OBJECTIVE_MET
                + racing_worker(target, origin, "app/farewell.py", "def bye():\\n    return 'bye'\\n"))
    config = write_config(target, cassette, PUSH)
    result = run_mc("mission", "--config", str(config), "--no-ui")
    assert result.returncode == 0, result.stdout[-3000:]
    repo = target / "repo"
    store = store_of(target)
    results = pushes(store)
    assert results[0]["rejected"] and not results[0]["ok"]  # recorded, never forced
    assert results[-1]["ok"]
    assert store.latest_mission()["status"] == "completed"
    assert len(store.rows("epochs")) == 1
    # the remote's commit came in through the queue (verified), then everything went out
    remote_merge = store.rows("merges", "unit_id IS NULL")
    assert [m["status"] for m in remote_merge] == ["promoted"]
    files = git(repo, "ls-tree", "-r", "--name-only", "mc/green").split()
    assert {"REMOTE.txt", "app/farewell.py"} <= set(files)
    assert git(origin, "rev-parse", "main") == git(repo, "rev-parse", "mc/green")


def test_a_remote_change_that_conflicts_is_the_outcome(target: Path) -> None:
    origin = bare_origin(target)
    cassette = (plan_entry("Add a farewell", "app/bye.py") + AMBITION_OK + OBJECTIVE_MET
                + racing_worker(target, origin, "app/bye.py", "def bye():\\n    return 'bye'\\n"))
    config = write_config(target, cassette, PUSH)
    result = run_mc("mission", "--config", str(config), "--no-ui")
    assert result.returncode == EXIT_NOT_PUSHED, result.stdout[-3000:]
    store = store_of(target)
    mission = store.latest_mission()
    assert mission["status"] == "not_pushed"
    assert mission["outcome"].startswith("objective met, not pushed:")
    assert "conflict" in mission["outcome"] and "app/bye.py" in mission["outcome"]
    # never forced: the remote still has their commit, not ours
    assert git(origin, "log", "-1", "--format=%s", "main") == "a commit from someone else"
    assert "app/bye.py" in git(target / "repo", "ls-tree", "-r", "--name-only", "mc/green")


def test_a_non_bare_remote_rejecting_the_push_is_not_success(target: Path) -> None:
    repo = target / "repo"
    origin = target / "origin"  # a non-bare clone with main checked out: it refuses pushes to main
    subprocess.run(["git", "clone", "-q", str(repo), str(origin)], check=True)
    git(repo, "remote", "add", "origin", str(origin))
    git(repo, "fetch", "-q", "origin")
    before = git(origin, "rev-parse", "main")
    config = write_config(
        target,
        plan_entry("Add a farewell", "app/bye.py") + AMBITION_OK + OBJECTIVE_MET
        + worker_entry("Add a farewell", "app/bye.py", "def bye():\\n    return 'bye'\\n"),
        PUSH,
    )
    result = run_mc("mission", "--config", str(config), "--no-ui")
    assert result.returncode == EXIT_NOT_PUSHED, result.stdout[-3000:]
    assert "not pushed" in result.stdout
    store = store_of(target)
    mission = store.latest_mission()
    assert mission["status"] == "not_pushed"
    assert mission["outcome"].startswith("objective met, not pushed:")
    assert "checked out" in mission["outcome"]
    assert git(origin, "rev-parse", "main") == before
    assert [u["status"] for u in store.units(1)] == ["merged"]  # the work itself is in mc/green
    status = run_mc("status", "--config", str(config))
    assert "not pushed" in status.stdout and "checked out" in status.stdout, status.stdout
    report = target / "report.json"
    run_mc("report", "--config", str(config), "-o", str(report))
    data = json.loads(report.read_text())
    assert data["mission"]["status"] == "not_pushed"
    assert data["push"]["ok"] is False and "checked out" in data["push"]["reason"]
