"""Store: migrations, status transitions, events (subscribe + cross-process tail), redaction."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import anyio
import pytest

from engine.models import UnitStatus
from engine.store import SCHEMA_VERSION, IllegalTransition, Store, StoreError
from engine.store.migrations import current_version, migrate


def new_mission(store: Store) -> int:
    return store.insert(
        "missions", {"objective": "o", "status": "running", "started_at": time.time()},
        event="mission.created",
    )


def new_unit(store: Store, mission_id: int, unit_id: str = "u1") -> str:
    now = time.time()
    return store.insert(
        "units",
        {"id": unit_id, "mission_id": mission_id, "title": "t", "status": "planned",
         "created_at": now, "updated_at": now},
        event="unit.created",
    )


def test_open_sets_pragmas(tmp_path: Path) -> None:
    store = Store(tmp_path / "state" / "m.db")
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert store.conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 5000
    assert current_version(store.conn) == SCHEMA_VERSION
    tables = set(store.db.table_names())
    for t in ("projects", "missions", "epochs", "units", "attempts", "merges", "verifications",
              "approvals", "costs", "events", "commands"):
        assert t in tables


def test_old_database_is_migrated_and_keeps_data(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, target=1)
    conn.execute(
        "INSERT INTO missions (objective, status, started_at) VALUES ('old', 'completed', 1.0)"
    )
    conn.close()
    store = Store(path)
    assert current_version(store.conn) == SCHEMA_VERSION
    assert store.latest_mission()["objective"] == "old"
    assert "commands" in store.db.table_names()


def test_newer_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    conn.close()
    with pytest.raises(StoreError, match="newer than this mc supports"):
        Store(path)


def test_status_change_writes_row_and_event_together(tmp_path: Path) -> None:
    store = Store(tmp_path / "m.db")
    mid = new_mission(store)
    new_unit(store, mid)
    before = store.last_event_id()
    store.set_status("units", "u1", UnitStatus.READY, reason="deps done")
    assert store.get("units", "u1")["status"] == "ready"
    events = store.events_after(before)
    assert [(e.kind, e.payload["from"], e.payload["to"]) for e in events] == [
        ("unit.status", "planned", "ready")
    ]
    assert events[0].unit_id == "u1" and events[0].mission_id == mid


def test_illegal_transition_writes_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path / "m.db")
    mid = new_mission(store)
    new_unit(store, mid)
    store.set_status("units", "u1", UnitStatus.MERGED)
    before = store.last_event_id()
    with pytest.raises(IllegalTransition):
        store.set_status("units", "u1", UnitStatus.RUNNING)
    assert store.get("units", "u1")["status"] == "merged"
    assert store.last_event_id() == before


def test_failed_transaction_rolls_back_row_and_event(tmp_path: Path) -> None:
    store = Store(tmp_path / "m.db")
    mid = new_mission(store)
    new_unit(store, mid)
    before = store.last_event_id()
    with pytest.raises(RuntimeError), store.transaction():
        store.set_status("units", "u1", UnitStatus.READY)
        raise RuntimeError("boom")
    assert store.get("units", "u1")["status"] == "planned"
    assert store.last_event_id() == before


def test_subscribe_gets_live_events_in_order(tmp_path: Path) -> None:
    store = Store(tmp_path / "m.db")
    mid = new_mission(store)

    async def main() -> list[str]:
        got: list[str] = []

        async def reader() -> None:
            async for event in store.subscribe(after_id=0):
                got.append(event.kind)
                if len(got) == 4:
                    return

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(reader)
                await anyio.sleep(0.05)
                new_unit(store, mid)
                store.set_status("units", "u1", UnitStatus.READY)
                store.append_event("log", mission_id=mid, message="hi")
        return got

    got = anyio.run(main)
    assert got == ["mission.created", "unit.created", "unit.status", "log"]


def test_a_mission_subscriber_gets_its_events_only_and_reads_the_table_only_on_a_gap(
        tmp_path: Path) -> None:
    """A subscriber to one mission is handed every event of its thread, to skip the others:
    an unbroken stream needs no table read, while an event appended from another thread (a
    gap in the ids it was handed) is read from the table, in order."""
    store = Store(tmp_path / "m.db")
    mine, other = new_mission(store), new_mission(store)
    reads: list[int] = []
    real = store.bus._read_after
    store.bus._read_after = lambda after, mid: reads.append(after) or real(after, mid)

    async def main() -> list[tuple[str, int | None]]:
        got: list[tuple[str, int | None]] = []
        agen = store.subscribe(after_id=store.last_event_id(), mission_id=mine)
        store.append_event("first", mission_id=mine)
        got.append(((e := await agen.__anext__()).kind, e.mission_id))  # registered now
        reads.clear()
        for i in range(5):
            store.append_event("theirs", mission_id=other, n=i)
            store.append_event("ours", mission_id=mine, n=i)
        for _ in range(5):
            got.append(((e := await agen.__anext__()).kind, e.mission_id))
        assert reads == [], "an unbroken stream read the table"
        await anyio.to_thread.run_sync(
            lambda: store.append_event("from a thread", mission_id=mine))
        store.append_event("after it", mission_id=mine)
        for _ in range(2):
            got.append(((e := await agen.__anext__()).kind, e.mission_id))
        assert reads, "the gap was not read from the table"
        await agen.aclose()
        return got

    got = anyio.run(main)
    assert got == [("first", mine)] + [("ours", mine)] * 5 + [("from a thread", mine),
                                                              ("after it", mine)]


def test_a_mission_subscriber_behind_another_missions_event_reads_the_table_once(
        tmp_path: Path) -> None:
    """After a table read that ends on another mission's event, the subscriber is past it:
    that mission's next events are an unbroken stream, not one read each (review finding)."""
    store = Store(tmp_path / "m.db")
    mine, other = new_mission(store), new_mission(store)
    store.append_event("ours before", mission_id=mine)
    store.append_event("theirs before", mission_id=other)  # the table ends on theirs
    reads: list[int] = []
    real = store.bus._read_after
    store.bus._read_after = lambda after, mid: reads.append(after) or real(after, mid)

    async def main() -> list[str]:
        agen = store.subscribe(after_id=0, mission_id=mine)
        got = [(await agen.__anext__()).kind]
        while got[-1] != "ours before":
            got.append((await agen.__anext__()).kind)
        reads.clear()
        for i in range(50):
            store.append_event("theirs", mission_id=other, n=i)
        store.append_event("ours", mission_id=mine)
        got.append((await agen.__anext__()).kind)
        await agen.aclose()
        return got

    assert anyio.run(main)[-1] == "ours"
    assert len(reads) == 1, reads


def test_subscriber_catches_up_after_overflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.store import events as events_mod

    monkeypatch.setattr(events_mod, "SUBSCRIBER_BUFFER", 2)
    store = Store(tmp_path / "m.db")

    async def main() -> list[int]:
        seen: list[int] = []
        agen = store.subscribe(after_id=0)
        first = await agen.__anext__()  # registers the subscriber
        seen.append(first.id)
        for i in range(20):  # far more than the buffer holds
            store.append_event("tick", n=i)
        while len(seen) < 21:
            seen.append((await agen.__anext__()).id)
        await agen.aclose()
        return seen

    store.append_event("start")
    seen = anyio.run(main)
    assert seen == list(range(1, 22))


def test_cross_process_tail(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    store = Store(db)
    writer = textwrap.dedent(
        f"""
        import time
        from engine.store import Store
        s = Store({str(db)!r})
        for i in range(5):
            s.append_event("remote", n=i)
            time.sleep(0.05)
        """
    )

    async def main() -> list[int]:
        proc = subprocess.Popen([sys.executable, "-c", writer])
        got: list[int] = []
        with anyio.fail_after(20):
            async for event in store.follow(after_id=0):
                got.append(event.payload["n"])
                if len(got) == 5:
                    break
        proc.wait(timeout=10)
        return got

    assert anyio.run(main) == [0, 1, 2, 3, 4]


def test_secrets_are_redacted_in_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MC_TELEGRAM_TOKEN", "tg-secret-123456")
    store = Store(tmp_path / "m.db")
    store.append_event("log", message="token is tg-secret-123456")
    store.insert("missions", {"objective": "use tg-secret-123456", "status": "running", "started_at": 1.0})
    store.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert b"tg-secret-123456" not in raw
    assert b"[REDACTED]" in raw


def test_approvals_and_commands(tmp_path: Path) -> None:
    store = Store(tmp_path / "m.db")
    mid = new_mission(store)
    aid = store.create_approval(mission_id=mid, gate="push", title="push mc/green", timeout=10)
    assert store.decide_approval(aid, True, by="cli") is True
    assert store.decide_approval(aid, False, by="cli") is False  # already decided
    assert store.get("approvals", aid)["status"] == "approved"
    store.send_command(mid, "pause")
    assert [c["kind"] for c in store.take_commands(mid)] == ["pause"]
    assert store.take_commands(mid) == []


def test_costs_roll_up(tmp_path: Path) -> None:
    store = Store(tmp_path / "m.db")
    mid = new_mission(store)
    new_unit(store, mid)
    store.add_cost(mission_id=mid, unit_id="u1", role="worker", usd=0.5, model="sonnet")
    store.add_cost(mission_id=mid, role="planner", usd=0.25, model="opus", estimated=True)
    assert store.mission_cost(mid) == pytest.approx(0.75)
    assert store.get("missions", mid)["total_cost_usd"] == pytest.approx(0.75)
    assert store.get("units", "u1")["cost_usd"] == pytest.approx(0.5)


def test_concurrent_migrations_of_a_new_store(tmp_path: Path) -> None:
    """Several processes may open a brand-new store at once: only one creates the schema."""
    import threading

    db = tmp_path / "m.db"
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []

    def opener() -> None:
        conn = sqlite3.connect(db, isolation_level=None, timeout=30)
        barrier.wait()
        try:
            migrate(conn)
        except BaseException as exc:
            errors.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=opener) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert Store(db).conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_sqlite_utils_calls_never_end_another_threads_transaction(tmp_path: Path) -> None:
    """sqlite-utils checks ``in_transaction`` and commits what it thinks it opened: on the
    store's shared connection that ended another thread's transaction half-way (the kill loop
    saw "cannot commit - no transaction is active"; this loop saw "no such savepoint" within
    a second). Its primitives now hold the store's lock."""
    store = Store(tmp_path / "s.db")
    store.db["scratch"].create({"id": int, "v": str}, pk="id")
    errors: list[BaseException] = []
    stop = time.monotonic() + 1.5

    def transactions() -> None:
        n = 0
        try:
            while time.monotonic() < stop:
                with store.transaction() as conn:
                    conn.execute("INSERT INTO scratch (v) VALUES ('a')")
                    conn.execute("INSERT INTO scratch (v) VALUES ('b')")
                n += 1
        except BaseException as exc:
            errors.append(exc)

    def sqlite_utils_user() -> None:
        try:
            while time.monotonic() < stop:
                store.db.table_names()
                store.db["scratch"].insert({"v": "c"})
                list(store.db.query("PRAGMA table_info(scratch)"))
                store.db.execute("UPDATE scratch SET v = v WHERE id = 1")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=transactions), threading.Thread(target=sqlite_utils_user)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
