"""Shared test fixtures."""

from __future__ import annotations

import os

import pytest

from tests.support.fixtures import (  # noqa: F401  (fixtures: model server and real CLIs)
    aider_cli,
    claude_cli,
    codex_cli,
    gemini_cli,
    model_server,
)


@pytest.fixture(scope="session", autouse=True)
def _private_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Worktree pools default to the user's cache dir: keep the tests' pools out of ~/.cache."""
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
