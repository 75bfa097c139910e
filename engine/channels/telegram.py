"""The Telegram channel: a message per approval with Approve / Deny buttons.

``[hitl.telegram]`` ``enabled``, ``chat_id`` (the one chat that receives requests and may
decide), ``token_env`` (the environment variable holding the bot token: the token is read
from there only, and never written to the store, the events, the logs or an agent's
environment), ``api_url`` (the Bot API base URL: a local Bot API server, a test double) and
``long_poll`` (seconds one ``getUpdates`` waits).

- ``approval.requested`` -> ``sendMessage`` to the chat: the gate, the title, the unit, the
  diff stat (the plan tree for ``plan``), the timeout, and an inline keyboard whose buttons
  carry ``callback_data`` ``mc:approve:<id>`` / ``mc:deny:<id>``; an ``approval.posted`` event
  keeps the message id (so a restart, which replays the mission's events, neither posts it
  again nor loses it).
- the background task long-polls ``getUpdates`` for ``callback_query`` updates: a button
  pressed in the configured chat decides the approval (``by = telegram:@user``) and is
  answered; a press from any other chat is refused (answered so, ``approval.refused``), as is
  one on an approval already decided (the answer says by whom).
- ``approval.status`` (a decision from any channel, or the timeout) -> ``editMessageText``:
  the same text with the outcome and who decided, and no buttons (``approval.updated``: a
  replay does not edit it again).

A failing API call is recorded as ``approval.channel_error`` (the token masked) and retried
with backoff (polling) or skipped (posting, editing): the engine never waits on Telegram, and
the other channels and the timeout still decide.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import anyio

from engine.channels.bot_api import BotApi, BotApiError
from engine.config import MissionConfig, TelegramConfig
from engine.models import Event
from engine.plugins import ObserverContext, Plugin, PluginConfig
from engine.store.db import Store

MAX_TEXT = 3500  # a message holds 4096 characters
MAX_BACKOFF = 30.0
OUTCOME = {"approved": "✅ Approved", "denied": "❌ Denied", "expired": "⌛ Expired (denied)"}


def approval_text(store: Store, row: dict[str, Any]) -> str:
    """What the message says about an approval row (without its outcome)."""
    lines = [f"Approval #{row['id']} · gate: {row['gate']}", row["title"]]
    if row.get("unit_id"):
        unit = store.get("units", row["unit_id"])
        lines.append(f"unit: {row['unit_id']} {unit['title'] if unit else ''}".rstrip())
    detail = row["diff"] if row["gate"] == "plan" else row["diffstat"]
    if row["gate"] == "plan" and row.get("diffstat"):
        lines.append(row["diffstat"])
    if detail:
        lines += ["", detail.strip()]
    if row.get("expires_at"):
        stamp = time.strftime("%H:%M:%S UTC", time.gmtime(row["expires_at"]))
        lines += ["", f"No answer by {stamp}: denied (the safe default)."]
    text = "\n".join(lines)
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT - 1] + "…"


def keyboard(approval_id: int) -> dict[str, Any]:
    return {"inline_keyboard": [[
        {"text": "✅ Approve", "callback_data": f"mc:approve:{approval_id}"},
        {"text": "❌ Deny", "callback_data": f"mc:deny:{approval_id}"},
    ]]}


def parse_callback(data: str) -> tuple[bool, int] | None:
    """``mc:approve:12`` -> (True, 12); None when it is not one of our buttons."""
    parts = data.split(":")
    if len(parts) != 3 or parts[0] != "mc" or parts[1] not in ("approve", "deny") \
            or not parts[2].isdigit():
        return None
    return parts[1] == "approve", int(parts[2])


def who(user: dict[str, Any]) -> str:
    if user.get("username"):
        return f"telegram:@{user['username']}"
    return f"telegram:{user.get('first_name') or user.get('id')}"


class TelegramChannel:
    """Observer (post, edit) + background task (poll for button presses)."""

    def __init__(self, config: TelegramConfig, token: str) -> None:
        self.config = config
        self.chat_id = config.chat_id.strip()
        self._token = token
        self._api: BotApi | None = None
        self._last_error = ""

    def api(self) -> BotApi:
        if self._api is None:
            self._api = BotApi(self._token, api_url=self.config.api_url)
        return self._api

    # ------------------------------------------------------------------ observer
    async def on_event(self, event: Event, ctx: ObserverContext) -> None:
        if not self._token:
            return
        if event.kind == "approval.requested":
            await self._post(ctx, int(event.payload["id"]))
        elif event.kind == "approval.status":
            await self._close(ctx, int(event.payload["id"]), event.payload)

    async def _post(self, ctx: ObserverContext, approval_id: int) -> None:
        row = ctx.store.get("approvals", approval_id)
        if row is None or row["status"] != "pending" or message_id(ctx.store, approval_id):
            return
        try:
            sent = await self.api().send_message(
                self.chat_id, approval_text(ctx.store, row), keyboard(approval_id))
        except BotApiError as exc:
            self._error(ctx, exc)
            return
        ctx.store.append_event("approval.posted", mission_id=ctx.mission_id,
                               unit_id=row["unit_id"], channel="telegram", id=approval_id,
                               message_id=sent.get("message_id"))

    async def _close(self, ctx: ObserverContext, approval_id: int, change: dict[str, Any]) -> None:
        row = ctx.store.get("approvals", approval_id)
        mid = message_id(ctx.store, approval_id)
        if row is None or mid is None or message_id(ctx.store, approval_id, "approval.updated"):
            return  # never posted, or already edited (a replay after a restart)
        outcome = OUTCOME.get(str(change.get("to")), str(change.get("to")))
        if change.get("by"):
            outcome += f" by {change['by']}"
        if change.get("reason"):
            outcome += f": {change['reason']}"
        try:
            await self.api().edit_message_text(
                self.chat_id, mid, f"{approval_text(ctx.store, row)}\n\n{outcome}")
        except BotApiError as exc:
            self._error(ctx, exc)
            return
        ctx.store.append_event("approval.updated", mission_id=ctx.mission_id,
                               unit_id=row["unit_id"], channel="telegram", id=approval_id,
                               message_id=mid, outcome=outcome)

    # ------------------------------------------------------------------ background
    async def run(self, ctx: ObserverContext) -> None:
        """Long-poll ``getUpdates`` and decide on button presses, until cancelled."""
        if not self._token:
            ctx.store.append_event(
                "approval.channel_error", mission_id=ctx.mission_id, channel="telegram",
                error=f"${self.config.token_env} is not set: Telegram approvals are off")
            return
        offset: int | None = None
        backoff = 1.0
        try:
            while True:
                try:
                    updates = await self.api().get_updates(offset, self.config.long_poll)
                except BotApiError as exc:
                    self._error(ctx, exc)
                    await anyio.sleep(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF)
                    continue
                backoff, self._last_error = 1.0, ""
                for update in updates:
                    offset = int(update["update_id"]) + 1
                    if "callback_query" not in update:
                        continue
                    try:
                        await self._pressed(ctx, update["callback_query"])
                    except Exception as exc:  # one odd update never ends the polling
                        self._error(ctx, BotApiError(
                            f"update {update['update_id']}: {type(exc).__name__}: {exc}"))
        finally:
            with anyio.CancelScope(shield=True):
                if self._api is not None:
                    await self._api.aclose()
                    self._api = None

    async def _pressed(self, ctx: ObserverContext, query: dict[str, Any]) -> None:
        chat = str(((query.get("message") or {}).get("chat") or {}).get("id", ""))
        parsed = parse_callback(str(query.get("data", "")))
        approval_id = parsed[1] if parsed else None
        if chat != self.chat_id:
            answer = "Refused: only the mission's chat may decide approvals."
            self._refused(ctx, approval_id, chat, "the button was pressed in another chat")
        elif parsed is None:
            answer = "Unknown button."
        else:
            approved, approval_id = parsed
            answer = self._decide(ctx, approval_id, approved, who(query.get("from") or {}))
        try:
            await self.api().answer_callback_query(str(query.get("id")), answer,
                                                   show_alert=chat != self.chat_id)
        except BotApiError as exc:
            self._error(ctx, exc)

    def _decide(self, ctx: ObserverContext, approval_id: int, approved: bool, by: str) -> str:
        row = ctx.store.get("approvals", approval_id)
        if row is None:
            return f"Approval #{approval_id} does not exist."
        if ctx.store.decide_approval(approval_id, approved, by=by):
            return f"{'Approved' if approved else 'Denied'} #{approval_id}."
        row = ctx.store.get("approvals", approval_id) or row
        decided = f" by {row['decided_by']}" if row.get("decided_by") else ""
        self._refused(ctx, approval_id, self.chat_id, f"already {row['status']}{decided}")
        return f"Already {row['status']}{decided}."

    def _refused(self, ctx: ObserverContext, approval_id: int | None, chat: str, why: str) -> None:
        ctx.store.append_event("approval.refused", mission_id=ctx.mission_id, channel="telegram",
                               id=approval_id, chat_id=chat, reason=why)

    def _error(self, ctx: ObserverContext, exc: BotApiError) -> None:
        text = str(exc)
        if text == self._last_error:
            return  # the same failure again: reported once until it changes
        self._last_error = text
        ctx.store.append_event("approval.channel_error", mission_id=ctx.mission_id,
                               channel="telegram", error=text)


def message_id(store: Store, approval_id: int, kind: str = "approval.posted") -> int | None:
    """The Telegram message posted (``approval.posted``) or edited with the outcome
    (``approval.updated``) for an approval; None when there is no such event. These events
    make a replay of the mission's events after a restart idempotent."""
    rows = store.query(
        "SELECT payload FROM events WHERE kind = ? "
        "AND json_extract(payload, '$.channel') = 'telegram' "
        "AND json_extract(payload, '$.id') = ? ORDER BY id DESC LIMIT 1", (kind, approval_id))
    if not rows:
        return None
    value = json.loads(rows[0]["payload"]).get("message_id")
    return int(value) if value is not None else None


class TelegramPlugin(Plugin):
    """``[hitl.telegram]``: approvals in a Telegram chat (see the module doc)."""

    name = "telegram"
    builtin = True
    order = 50

    def __init__(self, config: PluginConfig, mission: MissionConfig) -> None:
        super().__init__(config, mission)
        self.channel: TelegramChannel | None = None

    def observers(self) -> list[TelegramChannel]:
        hitl = self.mission.hitl
        telegram = hitl.telegram
        if not hitl.enabled or not telegram.enabled or not telegram.chat_id.strip():
            return []  # an empty chat_id is said at start (config.unavailable_notes)
        if self.channel is None:
            self.channel = TelegramChannel(telegram, os.environ.get(telegram.token_env, ""))
        return [self.channel]
