"""A small async client for the Telegram Bot API (the four methods the approval channel uses).

Requests are ``POST {api_url}/bot{token}/{method}`` with a JSON body; answers are
``{"ok": true, "result": ...}`` or ``{"ok": false, "error_code": N, "description": "..."}``
(https://core.telegram.org/bots/api#making-requests). The token is part of every URL, so it
is kept out of everything this module lets escape: :class:`BotApiError` messages, and the
``httpx`` log records (a filter masks it), never the store, the events or an agent's
environment.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx


class BotApiError(RuntimeError):
    """A Bot API call failed: the service said no (``description``) or could not be reached.
    The message never holds the token."""


class _MaskToken(logging.Filter):
    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self.token in message:
            record.msg, record.args = message.replace(self.token, "***"), None
        return True


class BotApi:
    """``sendMessage``, ``editMessageText``, ``getUpdates``, ``answerCallbackQuery``."""

    def __init__(self, token: str, *, api_url: str = "https://api.telegram.org",
                 timeout: float = 15.0) -> None:
        if not token:
            raise BotApiError("no bot token")
        self._token = token
        self._base = f"{api_url.rstrip('/')}/bot{token}/"
        self._timeout = timeout
        self._client = httpx.AsyncClient(timeout=timeout)
        self._mask = _MaskToken(token)
        for name in ("httpx", "httpcore"):
            logging.getLogger(name).addFilter(self._mask)

    async def aclose(self) -> None:
        await self._client.aclose()
        for name in ("httpx", "httpcore"):
            logging.getLogger(name).removeFilter(self._mask)

    def _clean(self, text: str) -> str:
        return text.replace(self._token, "***")

    async def call(self, method: str, *, wait: float = 0.0, **params: Any) -> Any:
        """The ``result`` of one method call; ``wait`` lengthens the timeout (long polls)."""
        body = {k: v for k, v in params.items() if v is not None}
        try:
            response = await self._client.post(
                self._base + method, json=body, timeout=self._timeout + wait)
            data = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise BotApiError(self._clean(f"{method}: {type(exc).__name__}: {exc}")) from None
        if not isinstance(data, dict) or not data.get("ok"):
            detail = data.get("description") if isinstance(data, dict) else None
            raise BotApiError(self._clean(
                f"{method}: HTTP {response.status_code}: {detail or 'no description'}"))
        return data.get("result")

    async def send_message(self, chat_id: str, text: str,
                           reply_markup: dict[str, Any] | None = None) -> dict[str, Any]:
        result: dict[str, Any] = await self.call(
            "sendMessage", chat_id=chat_id, text=text, reply_markup=reply_markup)
        return result

    async def edit_message_text(self, chat_id: str, message_id: int, text: str,
                                reply_markup: dict[str, Any] | None = None) -> Any:
        return await self.call("editMessageText", chat_id=chat_id, message_id=message_id,
                               text=text, reply_markup=reply_markup)

    async def get_updates(self, offset: int | None, timeout: int) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self.call(
            "getUpdates", wait=timeout, offset=offset, timeout=timeout,
            allowed_updates=["callback_query"])
        return result

    async def answer_callback_query(self, callback_query_id: str, text: str,
                                    show_alert: bool = False) -> Any:
        return await self.call("answerCallbackQuery", callback_query_id=callback_query_id,
                               text=text, show_alert=show_alert)
