"""Register plugins for a test without installing a package (an entry point added in memory)."""

from __future__ import annotations

import importlib.metadata
import sys
from pathlib import Path

import pytest

from engine.plugins import ENTRY_POINT_GROUP

EXAMPLE_SRC = Path(__file__).resolve().parents[2] / "examples" / "plugins" / "mc-audit" / "src"


def register(monkeypatch: pytest.MonkeyPatch, **plugins: str) -> None:
    """``register(mp, audit="mc_audit:AuditPlugin")``: visible to ``engine.plugins.discover``."""
    real = importlib.metadata.entry_points
    extra = [importlib.metadata.EntryPoint(name, value, ENTRY_POINT_GROUP)
             for name, value in plugins.items()]

    def entry_points(**params: str):  # type: ignore[no-untyped-def]
        found = real(**params)
        if params.get("group") == ENTRY_POINT_GROUP:
            return importlib.metadata.EntryPoints([*found, *extra])
        return found

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)


def use_example(monkeypatch: pytest.MonkeyPatch) -> None:
    """The worked example under ``examples/plugins/mc-audit``, registered as ``audit``."""
    monkeypatch.syspath_prepend(str(EXAMPLE_SRC))
    sys.modules.pop("mc_audit", None)
    register(monkeypatch, audit="mc_audit:AuditPlugin")
