"""The demo's scripted workers are replay-safe: a resumed unit may play its script again
on top of the commits (or saved uncommitted work) of the session that died."""

from __future__ import annotations

import shutil
from pathlib import Path

import anyio
import pytest
from agents_support import git

from engine.agents import AgentRequest, AgentRole, ScriptedBackend
from engine.agents.cassette import Cassette, load_cassette

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo"
# the worker units in an order that respects their dependencies (mean/median: its good attempt)
WORKERS = [
    ("Add multiply and divide", "1"),
    ("Add power and modulo", "1"),
    ("Add mean and median", "2"),
    ("Add variance and standard deviation", "1"),
    ("Document the API in the README", "1"),
    ("Add a runnable usage example", "1"),
]


def demo_cassette_without_sleeps() -> Cassette:
    cassette = load_cassette(DEMO / "cassette.toml")
    for entry in cassette.interactions:
        entry.actions = [a for a in entry.actions if a["type"] != "sleep"]
    return cassette


def play(backend: ScriptedBackend, repo: Path, title: str, attempt: str) -> None:
    request = AgentRequest(role=AgentRole.WORKER, prompt=f"unit: {title}", workdir=repo,
                           timeout_s=30, metadata={"unit_title": title, "attempt": attempt})

    async def main() -> None:
        result = await backend.run(request)
        assert result.status == "completed", (title, result.error)

    anyio.run(main)


@pytest.mark.parametrize(("title", "attempt"), WORKERS, ids=[t for t, _ in WORKERS])
def test_replaying_a_demo_worker_changes_nothing_more(tmp_path: Path, title: str, attempt: str) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(DEMO / "project", repo)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@x", "commit", "-qm", "demo")
    backend = ScriptedBackend(demo_cassette_without_sleeps())
    for other, other_attempt in WORKERS[: WORKERS.index((title, attempt)) + 1]:
        play(backend, repo, other, other_attempt)  # this unit's dependencies, then itself
    before = {p.relative_to(repo): p.read_bytes() for p in repo.rglob("*")
              if p.is_file() and ".git" not in p.parts}
    play(backend, repo, title, attempt)  # the resumed session plays the script again
    after = {p.relative_to(repo): p.read_bytes() for p in repo.rglob("*")
             if p.is_file() and ".git" not in p.parts}
    assert after == before
