"""Fixtures for the integration tests."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from agents_support import git

from engine.store import Store


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    (path / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    git(path, "add", "-A")
    git(path, "-c", "user.name=t", "-c", "user.email=t@x", "commit", "-qm", "init")
    return path


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "state" / "mission.db")
    yield s
    s.close()
