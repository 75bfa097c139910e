"""The layers of the engine, checked by import-linter (contracts in pyproject.toml)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_contracts_are_kept() -> None:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert exe is not None, "import-linter is a dev dependency: uv sync"
    out = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


def test_contracts_cover_the_layers_issue_12_names() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    for needle in ('forbidden_modules = ["mc_tui", "textual"]', '"engine.pipeline", "engine.runner"',
                   'type = "acyclic_siblings"'):
        assert needle in text
