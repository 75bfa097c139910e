"""HITL approvals on a real SQLite store: decisions from tasks, processes and files; timeouts."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import anyio
import pytest

from engine.config import MissionConfig
from engine.gates.hitl import _expire, gate_enabled, wait_for_decision
from engine.models import ApprovalStatus
from engine.store.db import Store, StoreError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "mission.db")
    yield s
    s.close()


def new_approval(store: Store, timeout: float = 5.0) -> int:
    return store.create_approval(
        mission_id=None,
        gate="push",
        title="Push mc/green to main",
        diffstat="a.py | 2 +-",
        timeout=timeout,
    )


def status_events(store: Store, approval_id: int) -> list[dict]:
    return [
        e.payload
        for e in store.events_after(0)
        if e.kind == "approval.status" and e.payload["id"] == approval_id
    ]


async def decide_later(store: Store, approval_id: int, approved: bool, delay: float = 0.05) -> None:
    await anyio.sleep(delay)
    assert store.decide_approval(approval_id, approved, by="tui")


@pytest.mark.parametrize(
    ("approved", "expected"), [(True, ApprovalStatus.APPROVED), (False, ApprovalStatus.DENIED)]
)
def test_decision_from_another_task(store: Store, approved: bool, expected: ApprovalStatus) -> None:
    aid = new_approval(store)

    async def main() -> ApprovalStatus:
        async with anyio.create_task_group() as tg:
            tg.start_soon(decide_later, store, aid, approved)
            return await wait_for_decision(store, aid, timeout=5, poll_interval=0.01)

    assert anyio.run(main) is expected
    assert store.get("approvals", aid)["decided_by"] == "tui"
    assert [e["to"] for e in status_events(store, aid)] == [expected.value]


def test_decision_from_another_process(store: Store) -> None:
    aid = new_approval(store)
    script = textwrap.dedent(f"""
        import time
        from engine.store.db import Store
        time.sleep(0.2)
        s = Store({str(store.path)!r})
        print(s.decide_approval({aid}, True, by="mc approve"))
    """)

    async def main() -> tuple[ApprovalStatus, str]:
        result: dict[str, str] = {}

        async def other_process() -> None:
            proc = await anyio.run_process([sys.executable, "-c", script], cwd=ROOT, check=True)
            result["out"] = proc.stdout.decode().strip()

        async with anyio.create_task_group() as tg:
            tg.start_soon(other_process)
            status = await wait_for_decision(store, aid, timeout=20, poll_interval=0.02)
        return status, result["out"]

    status, out = anyio.run(main)
    assert status is ApprovalStatus.APPROVED and out == "True"
    assert store.get("approvals", aid)["decided_by"] == "mc approve"


def test_timeout_expires_and_later_decisions_are_refused(store: Store) -> None:
    aid = new_approval(store)
    ticks: list[float] = []
    status = anyio.run(
        lambda: wait_for_decision(
            store, aid, timeout=0.15, poll_interval=0.02, on_tick=ticks.append
        )
    )
    assert status is ApprovalStatus.EXPIRED
    assert store.get("approvals", aid)["status"] == "expired"
    events = status_events(store, aid)
    assert events == [
        {"id": aid, "from": "pending", "to": "expired", "reason": "no decision within 0.15s"}
    ]
    assert ticks and all(0 < t <= 0.15 for t in ticks) and ticks == sorted(ticks, reverse=True)
    assert store.decide_approval(aid, True, by="late") is False


def test_already_decided_returns_at_once(store: Store) -> None:
    aid = new_approval(store)
    store.decide_approval(aid, False, by="cli")
    status = anyio.run(lambda: wait_for_decision(store, aid, timeout=0.01, poll_interval=10))
    assert status is ApprovalStatus.DENIED
    assert len(status_events(store, aid)) == 1


def test_cancelled_wait_expires_the_request(store: Store) -> None:
    aid = new_approval(store)

    async def main() -> bool:
        with anyio.move_on_after(0.05) as scope:
            await wait_for_decision(store, aid, timeout=60, poll_interval=0.01)
        return scope.cancelled_caught

    assert anyio.run(main) is True
    row = store.get("approvals", aid)
    assert row["status"] == "expired"
    assert status_events(store, aid)[-1]["reason"] == "the waiting engine stopped"


def test_expire_never_overrides_a_decision(store: Store) -> None:
    aid = new_approval(store)
    store.decide_approval(aid, True, by="tui")
    assert _expire(store, aid, "late") is ApprovalStatus.APPROVED
    assert store.get("approvals", aid)["status"] == "approved"


def test_unknown_approval(store: Store) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        anyio.run(lambda: wait_for_decision(store, 999, timeout=1))


def test_gate_enabled() -> None:
    config = MissionConfig()
    assert gate_enabled(config, "push")  # the default: enabled, gates = ["push"]
    assert not gate_enabled(config, "plan")
    config.hitl.gates = ["plan", "fixup"]
    assert gate_enabled(config, "plan") and not gate_enabled(config, "push")
    config.hitl.enabled = False
    assert not gate_enabled(config, "plan")
