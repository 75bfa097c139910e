"""Every event kind the engine can emit is documented in docs/architecture.md.

The kinds come from ``tests/support/event_kinds.py`` (the engine's source, read with ``ast``);
a call whose kind is not a literal fails the test too.
"""

from __future__ import annotations

from pathlib import Path

from tests.support.event_kinds import documented_kinds, emitted_kinds


def test_the_scanner_finds_the_engine_kinds() -> None:
    """Guard against a scanner that finds nothing (and so passes vacuously)."""
    kinds, _ = emitted_kinds()
    assert {"mission.created", "unit.status", "merge.status", "agent.event", "cost",
            "approval.requested", "command", "push.result", "green.promoted"} <= set(kinds)


def test_every_emitted_event_kind_is_documented() -> None:
    kinds, unknown = emitted_kinds()
    assert not unknown, "event kinds that are not literals (make them literal or list the "\
                        f"forwarding function in FORWARDERS): {unknown}"
    missing = {kind: sites for kind, sites in kinds.items() if kind not in documented_kinds()}
    assert not missing, ("event kinds emitted by the engine but missing from the tables of "
                         f"docs/architecture.md (add a row with its payload and meaning): {missing}")


def test_the_check_fails_on_an_undocumented_kind(tmp_path: Path) -> None:
    """The check itself: a new kind in engine code and not in the doc is reported."""
    doc = tmp_path / "doc.md"
    doc.write_text("| kind | payload |\n|---|---|\n| `known.kind` | `x` |\n")
    source = tmp_path / "engine"
    source.mkdir()
    (source / "m.py").write_text('def f(store):\n    store.append_event("brand.new", x=1)\n'
                                 '    store.append_event("known.kind")\n'
                                 '    store.set_status("widgets", 1, "on")\n'
                                 '    store.append_event(kind_var)\n')
    kinds, unknown = emitted_kinds(source, base=tmp_path)
    assert set(kinds) == {"brand.new", "known.kind", "widget.status"}
    assert set(kinds) - documented_kinds(doc) == {"brand.new", "widget.status"}
    assert unknown == ["engine/m.py:5: append_event(kind_var)"]
