"""Pytest fixtures of the test support (loaded by ``tests/conftest.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.model_server import ModelServer


@pytest.fixture
def model_server() -> Iterator[ModelServer]:
    """A started :class:`ModelServer` with no rules (answers ``OK``); add rules in the test."""
    with ModelServer() as server:
        yield server
