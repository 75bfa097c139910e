"""The approval-file channel on a real store: parsing, offsets across restarts, reports."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from engine.channels.file import ApprovalFileChannel, FileDecision, MalformedLine, parse_line
from engine.config import MissionConfig
from engine.gates.hitl import wait_for_decision
from engine.models import ApprovalStatus
from engine.plugins import ObserverContext, Plugin, PluginConfig, PluginManager
from engine.store.db import Store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "mission.db")
    yield s
    s.close()


def approval(store: Store) -> int:
    return store.create_approval(mission_id=None, gate="push", title="push", timeout=60)


def malformed(store: Store) -> list[dict]:
    return [e.payload for e in store.events_after(0) if e.kind == "approval.malformed"]


@pytest.mark.parametrize(("line", "expected"), [
    ("approve 12", FileDecision(12, True)),
    ("APPROVE #12  # looks fine", FileDecision(12, True)),
    ("y 3", FileDecision(3, True)),
    ("deny 12", FileDecision(12, False)),
    ("deny 12 touches billing code", FileDecision(12, False, "touches billing code")),
    ("no #7 # not now", FileDecision(7, False)),
    ('{"id": 4, "decision": "deny", "reason": "too big"}', FileDecision(4, False, "too big")),
    ('{"id": 5, "decision": "approve"}', FileDecision(5, True)),
    ("", None),
    ("   # a comment", None),
])
def test_parse_line(line: str, expected: FileDecision | None) -> None:
    assert parse_line(line) == expected


@pytest.mark.parametrize(("line", "error"), [
    ("approve", "expected"),
    ("maybe 4", "unknown word"),
    ("approve 4 because", "no reason"),
    ("approve twelve", "expected"),
    ("{not json", "invalid JSON"),
    ('["approve", 1]', "object"),
    ('{"id": "4", "decision": "approve"}', "integer"),
    ('{"id": 4, "decision": "perhaps"}', "decision"),
])
def test_parse_line_refuses(line: str, error: str) -> None:
    with pytest.raises(MalformedLine, match=error):
        parse_line(line)


def test_decides_reports_and_keeps_its_offset_across_restarts(store: Store, tmp_path: Path) -> None:
    first, second = approval(store), approval(store)
    path, state = tmp_path / "answers.txt", tmp_path / "state" / "offset"
    ctx = ObserverContext(store, 0)
    channel = ApprovalFileChannel(path, state)
    assert channel.step(ctx) == 0  # no file yet: nothing, no error
    path.write_text(f"# answers\nperhaps {first}\ndeny {first} too risky\napprove 999\napprove {second}")
    assert channel.step(ctx) == 1  # the last line has no newline yet: not read
    row = store.get("approvals", first)
    assert row["status"] == "denied" and row["decided_by"] == "file:answers.txt:3"
    status = [e.payload for e in store.events_after(0) if e.kind == "approval.status"]
    assert status[-1]["reason"] == "too risky" and status[-1]["by"] == "file:answers.txt:3"
    reports = malformed(store)
    assert [(r["line"], r["text"]) for r in reports] == [(2, f"perhaps {first}"), (4, "approve 999")]
    assert "unknown word" in reports[0]["error"] and "does not exist" in reports[1]["error"]
    with path.open("a") as f:
        f.write("\n")
    assert channel.step(ctx) == 1
    assert store.get("approvals", second)["status"] == "approved"
    # a restart: a new channel reads nothing again (no second report of lines 2 and 4)
    third = approval(store)
    with path.open("a") as f:
        f.write(f"approve {third}\n")
    again = ApprovalFileChannel(path, state)
    assert again.step(ctx) == 1
    assert store.get("approvals", third)["decided_by"] == "file:answers.txt:6"
    assert len(malformed(store)) == 2


def test_a_rewritten_file_is_read_again_without_harm(store: Store, tmp_path: Path) -> None:
    first, second = approval(store), approval(store)
    path, state = tmp_path / "answers.txt", tmp_path / "offset"
    ctx = ObserverContext(store, 0)
    path.write_text(f"approve {first}\n")
    assert ApprovalFileChannel(path, state).step(ctx) == 1
    path.write_text(f"deny {first}\ndeny {second}\n")  # truncated and rewritten
    assert ApprovalFileChannel(path, state).step(ctx) == 1
    assert store.get("approvals", first)["status"] == "approved"  # the first decision wins
    assert store.get("approvals", second)["status"] == "denied"


def test_the_channel_runs_as_a_plugin_beside_a_waiting_gate(store: Store, tmp_path: Path) -> None:
    """The real path: the plugin's observer runs (its background task polls the file) while
    the engine waits on the approval; a line appended later decides it."""
    from engine.channels.file import ApprovalFilePlugin

    path = tmp_path / "answers.txt"
    config = MissionConfig.model_validate({
        "target": {"path": str(tmp_path), "objective": "x"},
        "state": {"dir": str(tmp_path / "state")},
        "hitl": {"approval_file": str(path)},
    })
    manager = PluginManager([ApprovalFilePlugin(PluginConfig(), config)])
    aid = store.create_approval(mission_id=None, gate="push", title="push", timeout=30)

    async def main() -> ApprovalStatus:
        async with manager.observing(store, 0), anyio.create_task_group() as tg:
            async def answer() -> None:
                await anyio.sleep(0.2)
                path.write_text(f"approve {aid}\n")
            tg.start_soon(answer)
            return await wait_for_decision(store, aid, timeout=10, poll_interval=0.05)

    assert anyio.run(main) is ApprovalStatus.APPROVED


def test_a_failing_background_task_is_recorded_and_isolated(store: Store, tmp_path: Path) -> None:
    class Broken:
        def on_event(self, event, ctx) -> None:
            pass

        async def run(self, ctx) -> None:
            raise RuntimeError("chat API down")

    class BrokenPlugin(Plugin):
        name = "broken"

        def observers(self):
            return [Broken()]

    config = MissionConfig.model_validate({"target": {"path": str(tmp_path), "objective": "x"}})
    manager = PluginManager([BrokenPlugin(PluginConfig(), config)])

    async def main() -> None:
        async with manager.observing(store, 0):
            await anyio.sleep(0.2)

    anyio.run(main)
    errors = [e.payload for e in store.events_after(0) if e.kind == "plugin.error"]
    assert errors and errors[0]["where"] == "run:Broken" and "chat API down" in errors[0]["error"]


def test_an_unwritable_offset_is_reported_once_and_the_channel_goes_on(
    store: Store, tmp_path: Path
) -> None:
    path = tmp_path / "answers.txt"
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")  # the offset's folder is a file: saving it fails
    channel = ApprovalFileChannel(path, blocker / "offset", poll=0.02)
    first, second = approval(store), approval(store)
    path.write_text(f"approve {first}\n")

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(channel.run, ObserverContext(store, 0))
            await anyio.sleep(0.2)
            with path.open("a") as f:
                f.write(f"deny {second}\n")
            await anyio.sleep(0.2)
            tg.cancel_scope.cancel()

    anyio.run(main)
    assert store.get("approvals", first)["status"] == "approved"
    assert store.get("approvals", second)["status"] == "denied"
    errors = [e.payload for e in store.events_after(0) if e.kind == "approval.channel_error"]
    assert len(errors) == 1 and errors[0]["channel"] == "file"
