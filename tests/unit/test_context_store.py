"""The typed context store on a real store: markers, ingest, de-duplication, scope."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from engine.agents.marker import format_marker, parse_marker
from engine.learning import context
from engine.store import Store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "mission.db")
    mid = s.insert("missions", {"objective": "o", "status": "running", "started_at": time.time()})
    now = time.time()
    for uid, parent, files in [("r1", None, ["app/"]), ("a", "r1", ["app/bye.py"]),
                               ("b", "r1", ["docs/x.md"]), ("c", None, ["app/hello.py"]),
                               ("d", None, ["lib/util.py"])]:
        s.insert("units", {"id": uid, "mission_id": mid, "parent_id": parent, "title": uid,
                           "status": "running", "files_hint": files, "created_at": now,
                           "updated_at": now})
    return s


def report(store: Store, unit_id: str, items: list[dict], files: list[str]) -> None:
    store.append_event("unit.context", mission_id=1, unit_id=unit_id, attempt_id=1,
                       files_changed=files, items=items)


def test_marker_carries_typed_context_with_scopes() -> None:
    text = ('<mc-result>{"status": "completed", "summary": "s", "discoveries": ["uses pygit2"], '
            '"gotchas": [{"text": "tests   need TZ=UTC", "paths": ["tests/"]}], '
            '"conventions": "every module starts with an SPDX header"}</mc-result>')
    marker = parse_marker(text)
    assert marker is not None
    assert marker.context_items() == [
        ("discovery", "uses pygit2", []), ("gotcha", "tests need TZ=UTC", ["tests/"]),
        ("convention", "every module starts with an SPDX header", []),
    ]
    again = parse_marker(format_marker(marker))
    assert again is not None and again.context_items() == marker.context_items()


def test_ingest_dedupes_and_scopes(store: Store) -> None:
    header = {"kind": "convention", "text": "Every module starts with an SPDX header"}
    report(store, "a", [header, {"kind": "gotcha", "text": "bye() must stay ASCII"}],
           ["app/bye.py"])
    report(store, "d", [{**header, "text": "every module  starts with an SPDX header"}],
           ["lib/util.py"])
    assert context.ingest(store) == 3
    assert context.ingest(store) == 0  # the cursor: nothing twice
    rows = {r["kind"]: r for r in store.query("SELECT * FROM context_items")}
    assert len(rows) == 2
    conv = rows["convention"]
    assert conv["seen"] == 2 and json.loads(conv["paths"]) == ["app/bye.py", "lib/util.py"]
    assert json.loads(conv["unit_ids"]) == ["a", "d"] and json.loads(conv["roots"]) == ["r1", "d"]

    # c touches a file beside app/bye.py: both items, the convention first
    notes = [context.note(r) for r in context.for_unit(store, store.get("units", "c"))]
    assert notes[0].startswith("convention (app/bye.py, lib/util.py): Every module")
    assert notes[1] == "gotcha (app/bye.py): bye() must stay ASCII"
    # b touches docs/ only, but is in the same plan subtree (r1) as a
    assert len(context.for_unit(store, store.get("units", "b"))) == 2
    # a unit elsewhere, in another mission's subtree, sees nothing
    other = {"id": "zz", "mission_id": 99, "files_hint": ["web/index.html"]}
    assert context.for_unit(store, other) == []


@pytest.mark.parametrize(("files", "paths", "expected"), [
    (["src/api/client.py"], ["src/api/"], True),
    (["src/api/client.py"], ["src/api/server.py"], True),   # same directory
    (["src/api/client.py"], ["src/db/"], False),
    (["src/api/client.py"], ["*.py"], True),
    (["src/api/client.py"], ["src/*/client.py"], True),
    (["src/api/client.py"], ["*.md"], False),
    (["src/"], ["src/api/client.py"], True),                # a unit on the whole directory
    (["README.md"], ["**"], True),
    ([], ["src/"], False),
])
def test_scope_matching(files: list[str], paths: list[str], expected: bool) -> None:
    assert context.in_scope(files, paths) is expected
