"""The Telegram approval channel against a Bot API double on loopback, on a real store.

The channel runs as the engine runs it (the plugin's observer and background task under
``PluginManager.observing``) while the engine's gate waits on the approval.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from engine.channels.telegram import TelegramPlugin
from engine.config import MissionConfig
from engine.gates.hitl import wait_for_decision
from engine.mission import create_mission
from engine.models import ApprovalStatus
from engine.plugins import PluginConfig, PluginManager
from engine.store.db import Store
from tests.support.telegram_api import BotApiDouble

TOKEN = "123456:SECRET-bot-token-never-stored"
CHAT = 4242


@pytest.fixture
def api() -> Iterator[BotApiDouble]:
    double = BotApiDouble(TOKEN).start()
    yield double
    double.stop()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "mission.db")
    yield s
    s.close()


def setup(tmp_path: Path, store: Store, api: BotApiDouble, monkeypatch: pytest.MonkeyPatch,
          token: str | None = TOKEN) -> tuple[PluginManager, int]:
    if token is None:
        monkeypatch.delenv("MC_TELEGRAM_TOKEN", raising=False)
    else:
        monkeypatch.setenv("MC_TELEGRAM_TOKEN", token)
    config = MissionConfig.model_validate({
        "target": {"path": str(tmp_path), "objective": "x"},
        "hitl": {"telegram": {"enabled": True, "chat_id": str(CHAT), "api_url": api.url,
                              "long_poll": 1}},
    })
    mission_id = create_mission(store, config, objective="x")
    return PluginManager([TelegramPlugin(PluginConfig(), config)]), mission_id


def request(store: Store, mission_id: int, timeout: float = 30) -> int:
    store.insert("units", {"id": "u1", "mission_id": mission_id, "title": "Add a farewell",
                           "status": "pending", "is_leaf": 1, "created_at": 0.0,
                           "updated_at": 0.0})
    return store.create_approval(
        mission_id=mission_id, gate="large_merge", title="merge Add a farewell (620+/3-)",
        unit_id="u1", diffstat=" app/bye.py | 623 ++++++++-\n 1 file changed", timeout=timeout)


def events(store: Store, kind: str) -> list[dict]:
    return [e.payload for e in store.events_after(0) if e.kind == kind]


async def in_thread(fn, *args):  # type: ignore[no-untyped-def]
    return await anyio.to_thread.run_sync(fn, *args)


def test_a_button_in_the_chat_decides_and_a_foreign_chat_is_refused(
    tmp_path: Path, store: Store, api: BotApiDouble, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    manager, mission_id = setup(tmp_path, store, api, monkeypatch)
    aid = request(store, mission_id)

    async def main() -> ApprovalStatus:
        async with manager.observing(store, mission_id), anyio.create_task_group() as tg:
            async def person() -> None:
                sent = (await in_thread(api.wait_for, "sendMessage"))[0]
                message = next(iter(api.messages))
                assert sent["chat_id"] == str(CHAT)
                # a stranger who got hold of the message cannot decide
                await in_thread(lambda: api.press(message, f"mc:approve:{aid}", chat_id=999))
                await in_thread(api.wait_for, "answerCallbackQuery")
                assert store.get("approvals", aid)["status"] == "pending"
                api.press(message, f"mc:deny:{aid}", username="alice")
            tg.start_soon(person)
            status = await wait_for_decision(store, aid, timeout=30, poll_interval=0.05)
            await in_thread(api.wait_for, "editMessageText")
            return status

    assert anyio.run(main) is ApprovalStatus.DENIED
    sent = api.calls("sendMessage")
    assert len(sent) == 1
    text = sent[0]["text"]
    assert text.startswith(f"Approval #{aid} · gate: large_merge")
    assert "unit: u1 Add a farewell" in text and "app/bye.py | 623" in text
    buttons = sent[0]["reply_markup"]["inline_keyboard"][0]
    assert [b["callback_data"] for b in buttons] == [f"mc:approve:{aid}", f"mc:deny:{aid}"]
    answers = api.calls("answerCallbackQuery")
    assert answers[0]["text"].startswith("Refused") and answers[0]["show_alert"] is True
    assert answers[1]["text"] == f"Denied #{aid}."
    refused = events(store, "approval.refused")
    assert refused == [{"channel": "telegram", "id": aid, "chat_id": "999",
                        "reason": "the button was pressed in another chat"}]
    assert store.get("approvals", aid)["decided_by"] == "telegram:@alice"
    edit = api.calls("editMessageText")[0]
    assert edit["message_id"] == next(iter(api.messages))
    assert edit["text"].endswith("❌ Denied by telegram:@alice") and "reply_markup" not in edit
    # the token is in no event, no row and no log record
    dump = repr(store.query("SELECT * FROM events")) + repr(store.rows("approvals"))
    assert TOKEN not in dump and TOKEN not in caplog.text
    assert all(r.token == TOKEN for r in api.requests)  # and it was the one used


def test_a_decision_elsewhere_edits_the_message_and_a_late_press_says_who(
    tmp_path: Path, store: Store, api: BotApiDouble, monkeypatch: pytest.MonkeyPatch,
) -> None:
    manager, mission_id = setup(tmp_path, store, api, monkeypatch)
    aid = request(store, mission_id)

    async def main() -> None:
        async with manager.observing(store, mission_id):
            await in_thread(api.wait_for, "sendMessage")
            assert store.decide_approval(aid, True, by="cli")
            await in_thread(api.wait_for, "editMessageText")
            api.press(next(iter(api.messages)), f"mc:deny:{aid}")
            await in_thread(api.wait_for, "answerCallbackQuery")

    anyio.run(main)
    assert api.calls("editMessageText")[0]["text"].endswith("✅ Approved by cli")
    assert api.calls("answerCallbackQuery")[0]["text"] == "Already approved by cli."
    assert store.get("approvals", aid)["status"] == "approved"  # the first decision won


def test_expiry_edits_the_message(
    tmp_path: Path, store: Store, api: BotApiDouble, monkeypatch: pytest.MonkeyPatch,
) -> None:
    manager, mission_id = setup(tmp_path, store, api, monkeypatch)
    aid = request(store, mission_id, timeout=1)

    async def main() -> ApprovalStatus:
        async with manager.observing(store, mission_id):
            status = await wait_for_decision(store, aid, timeout=1, poll_interval=0.05)
            await in_thread(api.wait_for, "editMessageText")
            return status

    assert anyio.run(main) is ApprovalStatus.EXPIRED
    assert "⌛ Expired (denied): no decision within 1s" in api.calls("editMessageText")[0]["text"]


def test_a_failing_api_is_reported_retried_and_never_blocks_the_gate(
    tmp_path: Path, store: Store, api: BotApiDouble, monkeypatch: pytest.MonkeyPatch,
) -> None:
    manager, mission_id = setup(tmp_path, store, api, monkeypatch)
    api.fail_next(502, "Bad Gateway", times=2)  # the first poll and the post fail
    aid = request(store, mission_id)

    async def main() -> ApprovalStatus:
        async with manager.observing(store, mission_id):
            await anyio.sleep(0.3)
            store.decide_approval(aid, True, by="cli")
            status = await wait_for_decision(store, aid, timeout=5, poll_interval=0.05)
            await in_thread(lambda: api.wait_for("getUpdates", 2))  # polling went on
            return status

    assert anyio.run(main) is ApprovalStatus.APPROVED
    errors = events(store, "approval.channel_error")
    assert errors and all("HTTP 502: Bad Gateway" in e["error"] for e in errors)
    assert all(TOKEN not in e["error"] for e in errors)


def test_without_the_token_the_channel_says_so_and_stays_quiet(
    tmp_path: Path, store: Store, api: BotApiDouble, monkeypatch: pytest.MonkeyPatch,
) -> None:
    manager, mission_id = setup(tmp_path, store, api, monkeypatch, token=None)
    request(store, mission_id)

    async def main() -> None:
        async with manager.observing(store, mission_id):
            await anyio.sleep(0.3)

    anyio.run(main)
    assert not api.requests
    assert events(store, "approval.channel_error")[0]["error"].startswith(
        "$MC_TELEGRAM_TOKEN is not set")


def test_a_restarted_engine_neither_posts_again_nor_loses_the_message(
    tmp_path: Path, store: Store, api: BotApiDouble, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A crash leaves a request pending with its message out: the next run of the mission
    replays no old post, and a press on that message still decides (and edits it)."""
    manager, mission_id = setup(tmp_path, store, api, monkeypatch)
    done = store.create_approval(mission_id=mission_id, gate="push", title="push", timeout=30)
    aid = request(store, mission_id)

    async def first_run() -> None:
        async with manager.observing(store, mission_id):
            await in_thread(lambda: api.wait_for("sendMessage", 2))
            store.decide_approval(done, True, by="cli")
            await in_thread(api.wait_for, "editMessageText")

    anyio.run(first_run)
    api.requests.clear()
    again, _ = setup(tmp_path, store, api, monkeypatch)  # a new process: new plugin objects

    async def second_run() -> None:
        async with again.observing(store, mission_id):
            api.press(max(api.messages), f"mc:approve:{aid}", username="bob")
            await in_thread(api.wait_for, "editMessageText")

    anyio.run(second_run)
    assert not api.calls("sendMessage")  # nothing posted twice
    assert store.get("approvals", aid)["decided_by"] == "telegram:@bob"
    edits = api.calls("editMessageText")  # and the old decision is not edited again
    assert [e["text"].rsplit("\n", 1)[-1] for e in edits] == ["✅ Approved by telegram:@bob"]


def test_an_odd_update_is_reported_and_polling_goes_on(
    tmp_path: Path, store: Store, api: BotApiDouble, monkeypatch: pytest.MonkeyPatch,
) -> None:
    manager, mission_id = setup(tmp_path, store, api, monkeypatch)
    aid = request(store, mission_id)

    async def main() -> None:
        async with manager.observing(store, mission_id):
            await in_thread(api.wait_for, "sendMessage")
            message = next(iter(api.messages))
            api.press(message, "something else")  # not one of our buttons
            api.press(message, f"mc:approve:{aid}")
            status = await wait_for_decision(store, aid, timeout=10, poll_interval=0.05)
            assert status is ApprovalStatus.APPROVED

    anyio.run(main)
    assert api.calls("answerCallbackQuery")[0]["text"] == "Unknown button."
