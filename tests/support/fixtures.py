"""Pytest fixtures of the test support (loaded by ``tests/conftest.py``)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from tests.support.model_server import ModelServer


@pytest.fixture
def model_server() -> Iterator[ModelServer]:
    """A started :class:`ModelServer` with no rules (answers ``OK``); add rules in the test."""
    with ModelServer() as server:
        yield server


def _cli(name: str) -> str:
    from tests.support.real_clis import SPECS, CliInstallError, in_ci, install


    try:
        return str(install(SPECS[name]))
    except CliInstallError as exc:
        if exc.missing_tool and not in_ci():
            pytest.skip(f"the real {name} CLI cannot be installed here: {exc}")
        pytest.fail(f"could not install the real {name} CLI: {exc}")
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.fail(f"could not install the real {name} CLI: {exc}")


@pytest.fixture(scope="session")
def claude_cli() -> str:
    """Path of the real Claude Code (``@anthropic-ai/claude-code``, pinned), installed if needed."""
    return _cli("claude")


@pytest.fixture(scope="session")
def codex_cli() -> str:
    """Path of the real codex (``@openai/codex``, pinned), installed if needed."""
    return _cli("codex")


@pytest.fixture(scope="session")
def gemini_cli() -> str:
    """Path of the real gemini-cli (``@google/gemini-cli``, pinned), installed if needed."""
    return _cli("gemini")


@pytest.fixture(scope="session")
def aider_cli() -> str:
    """Path of the real aider (``aider-chat`` in its own venv, pinned), installed if needed."""
    return _cli("aider")
