"""Notifications (``[notify]``): mission events to a webhook, Telegram or the desktop.

The built-in ``notify`` plugin's observer turns events into :class:`Notice` s (mission
started / finished / failed / stalled, an agent stalled, an approval pending, the budget at
50 / 80 / 100 %, a push rejected) and puts them on the :class:`Notifier`'s queue; the
notifier's own thread batches what arrives within ``batch_seconds`` into one message per
target and sends it, retrying with a doubling back-off. Nothing waits for a target: a slow
or dead one only delays its own queue (``on_event`` only enqueues). A batch that still
fails is dropped and reported once per target as a ``notify.failed`` event.

Targets: a **webhook** (POST of JSON ``{"source", "mission_id", "notices": [...],
"text"}``), **Telegram** (Bot API ``sendMessage`` to ``telegram_chat_id``; the token is read
from the variable named by ``telegram_token_env`` and never written anywhere: errors name
the status, not the URL), the **desktop** (``notify-send``; when it is missing one
``log`` event says so).
"""

from __future__ import annotations

import logging
import os
import queue
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import httpx

from engine.models import Event
from engine.plugins import ObserverContext, Plugin, PluginConfig

if TYPE_CHECKING:
    from engine.config import MissionConfig, NotifyConfig
    from engine.store import Store

BUDGET_STEPS = (50, 80, 100)  # per cent of scheduler.budget.max_per_run_usd
FINISHED = {"completed": "finished", "not_pushed": "finished", "stopped": "finished",
            "failed": "failed", "interrupted": "failed", "stalled": "stalled"}
FLUSH_WAIT_S = 8.0  # at the mission's end, how long the observer waits for the last batch


@dataclass
class Notice:
    """One thing worth telling a human: ``kind`` (a ``[notify] events`` name), a one-line
    ``text``, the mission, the event id and time it came from."""

    kind: str
    text: str
    mission_id: int | None = None
    event_id: int = 0
    ts: float = field(default_factory=time.time)


# --------------------------------------------------------------------------- classify
class NoticeMaker:
    """Events -> notices; remembers the spend so each budget step fires once."""

    def __init__(self, budget_usd: float, spent: float = 0.0) -> None:
        self.budget = budget_usd
        self.spent = spent
        self.fired = {step for step in BUDGET_STEPS if self._share() >= step}

    def _share(self) -> float:
        return 100.0 * self.spent / self.budget if self.budget > 0 else 0.0

    def notices(self, event: Event) -> list[Notice]:
        p, kind, mid = event.payload, event.kind, event.mission_id
        out: list[tuple[str, str]] = []
        if kind == "mission.created":
            out.append(("started", f"mission #{mid} started: {str(p.get('objective') or '')[:200]}"
                        .rstrip(": ")))
        elif kind == "mission.resumed":
            out.append(("started", f"mission #{mid} resumed"))
        elif kind == "mission.status":
            to = str(p.get("to"))
            if to == "running" and p.get("from") == "pending":
                out.append(("started", f"mission #{mid} started"))
            elif to in FINISHED:
                reason = f": {p['reason']}" if p.get("reason") else ""
                out.append((FINISHED[to], f"mission #{mid} {to}{reason}"))
        elif kind == "agent.stalled":
            out.append(("stalled", str(p.get("message") or "an agent stalled")))
        elif kind == "approval.requested":
            out.append(("approval", f"approval #{p.get('id')} pending ({p.get('gate')}): "
                        f"{p.get('title')}; `mc approve {p.get('id')}` or `mc deny {p.get('id')}`"))
        elif kind == "cost":
            self.spent += float(p.get("usd") or 0.0)
            share = self._share()
            for step in BUDGET_STEPS:
                if share >= step and step not in self.fired:
                    self.fired.add(step)
                    out.append(("budget", f"mission #{mid}: {step} % of the budget spent "
                                f"(${self.spent:.2f} of ${self.budget:.2f})"))
        elif kind == "push.result" and not p.get("ok"):
            out.append(("push_rejected", f"mission #{mid}: push rejected: "
                        f"{str(p.get('output') or p.get('reason') or '')[:300]}"))
        return [Notice(k, t, mid, event.id, event.ts) for k, t in out]


# --------------------------------------------------------------------------- targets
class Target:
    name = "target"

    def send(self, notices: list[Notice], client: httpx.Client) -> None:
        """Deliver one batch; raise on failure (the notifier retries)."""
        raise NotImplementedError


def message_text(notices: list[Notice]) -> str:
    """One message for a batch: a line per notice."""
    if len(notices) == 1:
        return f"Mission Control: {notices[0].text}"
    return "Mission Control\n" + "\n".join(f"• {n.text}" for n in notices)


class WebhookTarget(Target):
    name = "webhook"

    def __init__(self, url: str) -> None:
        self.url = url

    def send(self, notices: list[Notice], client: httpx.Client) -> None:
        body = {"source": "mission-control", "mission_id": notices[0].mission_id,
                "notices": [asdict(n) for n in notices], "text": message_text(notices)}
        response = client.post(self.url, json=body)
        if response.status_code >= 300:
            raise NotifyError(f"webhook answered HTTP {response.status_code}")


class _RedactToken(logging.Filter):
    """httpx logs each request's URL at INFO; the Bot API URL holds the token."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if self.token in text:
            record.msg, record.args = text.replace(self.token, "<redacted>"), ()
        return True


class TelegramTarget(Target):
    name = "telegram"

    def __init__(self, api_url: str, token: str, chat_id: str) -> None:
        self._url = f"{api_url.rstrip('/')}/bot{token}/sendMessage"  # holds the token: never shown
        self.chat_id = chat_id
        for name in ("httpx", "httpcore"):
            logger = logging.getLogger(name)
            if not any(isinstance(f, _RedactToken) and f.token == token for f in logger.filters):
                logger.addFilter(_RedactToken(token))

    def send(self, notices: list[Notice], client: httpx.Client) -> None:
        try:
            response = client.post(self._url, json={"chat_id": self.chat_id,
                                                    "text": message_text(notices)})
        except httpx.HTTPError as exc:  # its message may hold the URL, hence the token
            raise NotifyError(f"Telegram unreachable ({type(exc).__name__})") from None
        if response.status_code >= 300:
            raise NotifyError(f"Telegram answered HTTP {response.status_code}")


class DesktopTarget(Target):
    name = "desktop"

    def __init__(self, executable: str) -> None:
        self.executable = executable

    def send(self, notices: list[Notice], client: httpx.Client) -> None:
        body = "\n".join(n.text for n in notices)
        done = subprocess.run([self.executable, "--app-name=mc", "Mission Control", body],
                              capture_output=True, text=True, timeout=10, check=False)
        if done.returncode != 0:
            raise NotifyError(f"notify-send exited {done.returncode}: {done.stderr.strip()[:200]}")


class NotifyError(Exception):
    """A target did not take a batch (the message never holds a secret)."""


# --------------------------------------------------------------------------- notifier
class Notifier:
    """A queue and a thread: batches notices within ``batch_s`` and sends them to every
    target, retrying ``retries`` times with a back-off of ``backoff_s`` doubling each time.
    ``report(target, error, dropped)`` is called once per target whose batch was dropped."""

    def __init__(self, targets: list[Target], *, batch_s: float, retries: int, backoff_s: float,
                 timeout_s: float, report: Callable[[str, str, int], None]) -> None:
        self.targets = targets
        self.batch_s = batch_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self.report = report
        self.sent: list[tuple[str, int]] = []  # (target, notices) per delivered batch
        self._queue: queue.Queue[Notice | None] = queue.Queue()
        self._idle = threading.Event()
        self._idle.set()
        self._reported: set[str] = set()
        self._thread = threading.Thread(target=self._run, name="mc-notify", daemon=True)
        self._thread.start()

    def put(self, notice: Notice) -> None:
        """Enqueue (never blocks)."""
        self._idle.clear()
        self._queue.put(notice)

    def flush(self, timeout: float) -> bool:
        """Send what is queued now (no batching wait) and wait up to ``timeout`` s for it."""
        self._queue.put(None)  # wakes the batch window early
        return self._idle.wait(timeout)

    def _run(self) -> None:
        with httpx.Client(timeout=self.timeout_s) as client:
            while True:
                first = self._queue.get()
                batch = [first] if first is not None else []
                deadline = time.monotonic() + self.batch_s
                while first is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    try:
                        item = self._queue.get(timeout=left)
                    except queue.Empty:
                        break
                    if item is None:
                        break
                    batch.append(item)
                if batch:
                    for target in self.targets:
                        self._deliver(target, batch, client)
                if self._queue.empty():
                    self._idle.set()

    def _deliver(self, target: Target, batch: list[Notice], client: httpx.Client) -> None:
        error = ""
        for attempt in range(self.retries + 1):
            try:
                target.send(batch, client)
                self.sent.append((target.name, len(batch)))
                return
            except (NotifyError, httpx.HTTPError, OSError, subprocess.SubprocessError) as exc:
                error = str(exc) if isinstance(exc, NotifyError) else type(exc).__name__
            if attempt < self.retries:
                time.sleep(self.backoff_s * 2**attempt)
        if target.name not in self._reported:
            self._reported.add(target.name)
            self.report(target.name, error, len(batch))


def build_targets(cfg: NotifyConfig, note: Callable[[str], None]) -> list[Target]:
    """The targets ``cfg`` configures; a missing token or ``notify-send`` is said once via
    ``note`` and that target left out."""
    targets: list[Target] = []
    if cfg.webhook_url:
        targets.append(WebhookTarget(cfg.webhook_url))
    if cfg.telegram_chat_id:
        token = os.environ.get(cfg.telegram_token_env, "")
        if token:
            targets.append(TelegramTarget(cfg.telegram_api_url, token, cfg.telegram_chat_id))
        else:
            note(f"notify.telegram_chat_id is set but ${cfg.telegram_token_env} is empty: "
                 "no Telegram notifications")
    if cfg.desktop:
        executable = shutil.which("notify-send")
        if executable:
            targets.append(DesktopTarget(executable))
        else:
            note("notify.desktop: notify-send is not installed here (libnotify-bin): "
                 "no desktop notifications")
    return targets


# --------------------------------------------------------------------------- plugin
class NotifyPlugin(Plugin):
    """``[notify]``: an observer feeding a :class:`Notifier` (its own queue and thread)."""

    name = "notify"
    builtin = True
    order = 50

    def __init__(self, config: PluginConfig, mission: MissionConfig) -> None:
        super().__init__(config, mission)
        self.notifier: Notifier | None = None

    def observers(self) -> list[NotifyObserver]:
        cfg = self.mission.notify
        if not cfg.enabled or not (cfg.webhook_url or cfg.telegram_chat_id or cfg.desktop):
            return []
        return [NotifyObserver(self)]


class NotifyObserver:
    def __init__(self, plugin: NotifyPlugin) -> None:
        self.plugin = plugin
        self.maker: NoticeMaker | None = None

    def start_after(self, ctx: ObserverContext) -> int:
        """Start the notifier; count only what happens from now on (a resumed mission's
        earlier notices went out before; the budget steps already reached stay fired)."""
        mission = self.plugin.mission
        store = ctx.store
        cfg = mission.notify

        def note(message: str) -> None:
            store.append_event("log", mission_id=ctx.mission_id, level="warning", message=message)

        def report(target: str, error: str, dropped: int) -> None:
            store.append_event("notify.failed", mission_id=ctx.mission_id, target=target,
                               error=error, dropped=dropped,
                               message=f"notifications to {target} failed: {error}")

        targets = build_targets(cfg, note)
        if targets:
            self.plugin.notifier = Notifier(
                targets, batch_s=cfg.batch_seconds, retries=cfg.max_retries,
                backoff_s=cfg.retry_backoff_seconds, timeout_s=cfg.timeout_seconds, report=report)
        start = _last_before_start(store, ctx.mission_id)
        replayed = store.query(
            "SELECT COALESCE(SUM(json_extract(payload, '$.usd')), 0) AS usd FROM events "
            "WHERE mission_id = ? AND kind = 'cost' AND id > ?", (ctx.mission_id, start))
        self.maker = NoticeMaker(mission.scheduler.budget.max_per_run_usd,
                                 store.mission_cost(ctx.mission_id) - float(replayed[0]["usd"]))
        return start

    def on_event(self, event: Event, ctx: ObserverContext) -> None:
        notifier, maker = self.plugin.notifier, self.maker
        if notifier is None or maker is None:
            return
        wanted = self.plugin.mission.notify.events
        for notice in maker.notices(event):
            if notice.kind in wanted:
                notifier.put(notice)
        if event.kind == "mission.status" and str(event.payload.get("to")) in FINISHED:
            notifier.flush(FLUSH_WAIT_S)  # the process may exit after the last event


def _last_before_start(store: Store, mission_id: int) -> int:
    """The last event id before this run of the mission: its ``mission.created`` (or, on
    a resume, ``mission.resumed``) is delivered (that is "started")."""
    rows = store.query(
        "SELECT id FROM events WHERE mission_id = ? AND kind IN ('mission.created', "
        "'mission.resumed') ORDER BY id DESC LIMIT 1", (mission_id,))
    return int(rows[0]["id"]) - 1 if rows else store.last_event_id()
