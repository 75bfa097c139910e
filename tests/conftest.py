"""Shared test fixtures."""

from __future__ import annotations

import pytest

from tests.support.fixtures import (  # noqa: F401  (fixtures: model server and real CLIs)
    aider_cli,
    claude_cli,
    codex_cli,
    gemini_cli,
    model_server,
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
