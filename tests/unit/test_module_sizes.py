"""No engine module over 400 lines without a stated reason (issue 12).

The convention (``docs/architecture.md``, "Module sizes"): a module of ``engine/`` longer than
:data:`LIMIT` lines says why in its module docstring, in a paragraph that starts with
``Size:`` (one sentence). Anything else over the limit fails here: split it by responsibility,
or state the reason.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENGINE = ROOT / "engine"
LIMIT = 400  # lines, as `wc -l` counts them

# Modules other work is changing right now: their reason is kept here until their docstring
# gets its ``Size:`` paragraph (then the entry must go: see test_every_pending_entry_...).
PENDING: dict[str, str] = {}


def line_count(path: Path) -> int:
    """Lines of ``path`` as ``wc -l`` counts them (newline characters)."""
    return path.read_bytes().count(b"\n")


def size_reason(path: Path) -> str | None:
    """The ``Size:`` paragraph of the module docstring of ``path`` (None: there is none)."""
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    for paragraph in doc.split("\n\n"):
        text = " ".join(paragraph.split())
        if text.startswith("Size:") and len(text) > len("Size:") + 10:
            return text
    return None


def modules() -> list[Path]:
    return sorted(p for p in ENGINE.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_long_engine_module_states_why() -> None:
    offenders = [
        f"{p.relative_to(ROOT)}: {line_count(p)} lines"
        for p in modules()
        if line_count(p) > LIMIT and size_reason(p) is None
        and str(p.relative_to(ROOT)) not in PENDING
    ]
    assert not offenders, (
        f"engine modules over {LIMIT} lines without a 'Size:' paragraph in their docstring "
        "(split them by responsibility, or state the reason; docs/architecture.md):\n  "
        + "\n  ".join(offenders))


def test_the_architecture_page_lists_every_long_module() -> None:
    page = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    long = [str(p.relative_to(ROOT)) for p in modules() if line_count(p) > LIMIT]
    missing = [name for name in long if f"`{name}`" not in page]
    assert not missing, f"docs/architecture.md 'Module sizes' does not list: {missing}"


def test_every_pending_entry_is_still_needed() -> None:
    for name in sorted(PENDING):
        path = ROOT / name
        assert path.exists(), f"{name} is gone: drop it from PENDING"
        assert line_count(path) > LIMIT, f"{name} is {line_count(path)} lines: drop it from PENDING"
        assert size_reason(path) is None, f"{name} states its reason now: drop it from PENDING"


def test_the_reason_check_reads_the_docstring_only(tmp_path: Path) -> None:
    stated = tmp_path / "stated.py"
    stated.write_text('"""A module.\n\nSize: one schema of the whole file, read together.\n"""\n')
    unstated = tmp_path / "unstated.py"
    unstated.write_text('"""A module."""\n\n# Size: a comment is not the docstring\n')
    empty = tmp_path / "empty.py"
    empty.write_text('"""A module.\n\nSize:\n"""\n')
    assert size_reason(stated) == "Size: one schema of the whole file, read together."
    assert size_reason(unstated) is None
    assert size_reason(empty) is None
