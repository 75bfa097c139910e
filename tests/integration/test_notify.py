"""Notifications on loopback: a webhook receiver and a Telegram Bot API double take batches
from the notify observer (real store, real HTTP, a real notify-send stand-in); retries,
once-only budget steps, and a dead target that never slows the engine."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import pytest

from engine.config import MissionConfig
from engine.notify import NotifyObserver, NotifyPlugin
from engine.plugins import ObserverContext, PluginConfig
from engine.store import Store
from tests.support.notify_receivers import LoopbackReceiver, TelegramBotDouble

TOKEN = "123456:telegram-secret-token-for-tests"


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "m.db")
    yield s
    s.close()


def config(**notify: object) -> MissionConfig:
    cfg = MissionConfig()
    cfg.scheduler.budget.max_per_run_usd = 10.0
    cfg.notify.batch_seconds = 0.3
    cfg.notify.retry_backoff_seconds = 0.05
    for key, value in notify.items():
        setattr(cfg.notify, key, value)
    return cfg


def start(store: Store, cfg: MissionConfig) -> tuple[NotifyPlugin, NotifyObserver, ObserverContext, int]:
    mid = int(store.insert("missions", {"objective": "o", "status": "pending", "started_at": 1.0}))
    plugin = NotifyPlugin(PluginConfig(), cfg)
    observers = plugin.observers()
    assert len(observers) == 1
    ctx = ObserverContext(store=store, mission_id=mid)
    observers[0].start_after(ctx)
    return plugin, observers[0], ctx, mid


def emit(observer: NotifyObserver, ctx: ObserverContext, store: Store, kind: str, **payload: object) -> float:
    """Append a real event and hand it to the observer; returns how long on_event took."""
    event = store.append_event(kind, mission_id=ctx.mission_id, **payload)
    began = time.monotonic()
    observer.on_event(event, ctx)
    return time.monotonic() - began


def test_batches_to_webhook_and_telegram_with_budget_steps_once(
    store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # httpx logs every request URL: the token must not show
    monkeypatch.setenv("MC_TELEGRAM_TOKEN", TOKEN)
    with LoopbackReceiver() as hook, TelegramBotDouble(TOKEN) as bot:
        cfg = config(webhook_url=f"{hook.url}/hook", telegram_chat_id="42",
                     telegram_api_url=bot.url)
        plugin, obs, ctx, mid = start(store, cfg)
        emit(obs, ctx, store, "mission.status", id=mid, **{"from": "pending", "to": "running"})
        emit(obs, ctx, store, "approval.requested", id=7, gate="push", title="Push mc/green")
        for usd in (3.0, 2.5, 2.0, 1.0, 2.0, 5.0):  # 30 % .. 155 %: 50, 80, 100 once each
            emit(obs, ctx, store, "cost", role="worker", usd=usd)
        emit(obs, ctx, store, "push.result", ok=False, rejected=True, output="[rejected] non-fast-forward")
        emit(obs, ctx, store, "mission.status", id=mid, reason="objective met",
             **{"from": "running", "to": "completed"})
        assert hook.wait_for(1) and bot.wait_for(1)
    notices = [n for r in hook.received for n in r.body["notices"]]
    kinds = [n["kind"] for n in notices]
    assert kinds == ["started", "approval", "budget", "budget", "budget", "push_rejected", "finished"]
    assert [n["text"].split(": ")[1].split(" ")[0] for n in notices if n["kind"] == "budget"] == ["50", "80", "100"]
    assert len(hook.received) < len(notices)  # batched: several events in one message
    assert all(r.path == "/hook" and r.body["mission_id"] == mid for r in hook.received)
    assert "mc approve 7" in hook.received[0].body["text"]
    texts = "\n".join(r.body["text"] for r in bot.received)
    assert all(r.body["chat_id"] == "42" for r in bot.received)
    for needle in ("started", "approval #7 pending", "100 % of the budget", "push rejected", "completed"):
        assert needle in texts, needle
    assert plugin.notifier is not None and {t for t, _ in plugin.notifier.sent} == {"webhook", "telegram"}
    dump = json.dumps([e.payload for e in store.events_after(0)])
    assert TOKEN not in dump
    assert "sendMessage" in caplog.text and TOKEN not in caplog.text


def test_a_failed_send_is_retried_with_backoff(store: Store) -> None:
    with LoopbackReceiver() as hook:
        hook.fail_next(2, status=503)
        plugin, obs, ctx, mid = start(store, config(webhook_url=hook.url, max_retries=3))
        emit(obs, ctx, store, "mission.status", id=mid, **{"from": "pending", "to": "running"})
        assert hook.wait_for(1)
    assert len(hook.attempts) == 3 and len(hook.received) == 1
    gaps = [b.ts - a.ts for a, b in zip(hook.attempts, hook.attempts[1:], strict=False)]
    assert gaps[1] > gaps[0] * 1.5  # the back-off doubles
    assert not [e for e in store.events_after(0) if e.kind == "notify.failed"]


def test_a_dead_target_never_slows_the_engine_and_is_reported_once(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MC_TELEGRAM_TOKEN", TOKEN)
    with LoopbackReceiver() as slow:
        slow.delay = 2.0  # answers after the client's timeout
        dead_port = LoopbackReceiver()
        dead_url = dead_port.url
        dead_port.server_close()  # nothing listens there any more
        cfg = config(webhook_url=slow.url, telegram_chat_id="42", telegram_api_url=dead_url,
                     max_retries=1, timeout_seconds=0.5, batch_seconds=0.05)
        plugin, obs, ctx, mid = start(store, cfg)
        took = [emit(obs, ctx, store, "approval.requested", id=n, gate="push", title="t")
                for n in range(20)]
        assert max(took) < 0.05, took  # on_event only enqueues
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            failed = [e.payload for e in store.events_after(0) if e.kind == "notify.failed"]
            if {f["target"] for f in failed} == {"webhook", "telegram"}:
                break
            time.sleep(0.05)
    failed = [e.payload for e in store.events_after(0) if e.kind == "notify.failed"]
    assert sorted(f["target"] for f in failed) == ["telegram", "webhook"]  # once per target
    assert TOKEN not in json.dumps(failed) and "unreachable" in json.dumps(failed)


def test_desktop_uses_notify_send_or_says_once_that_it_is_missing(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    monkeypatch.setenv("PATH", str(bindir))
    plugin, obs, ctx, mid = start(store, config(desktop=True))
    notes = [e.payload["message"] for e in store.events_after(0) if e.kind == "log"]
    assert len(notes) == 1 and "notify-send is not installed" in notes[0]
    assert plugin.notifier is None
    emit(obs, ctx, store, "mission.status", id=mid, **{"from": "pending", "to": "running"})

    log = tmp_path / "notify-send.log"
    script = bindir / "notify-send"
    script.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" >> {log}\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}/usr/bin:/bin")
    plugin, obs, ctx, mid = start(store, config(desktop=True))
    emit(obs, ctx, store, "agent.stalled", message="unit u1: stalled: no output for 600 s")
    emit(obs, ctx, store, "mission.status", id=mid, **{"from": "running", "to": "failed"})
    assert log.exists() and "stalled: no output for 600 s" in log.read_text()
    assert "Mission Control" in log.read_text()


def test_events_not_wanted_are_not_sent(store: Store) -> None:
    with LoopbackReceiver() as hook:
        plugin, obs, ctx, mid = start(store, config(webhook_url=hook.url, events=["failed"]))
        emit(obs, ctx, store, "mission.status", id=mid, **{"from": "pending", "to": "running"})
        emit(obs, ctx, store, "mission.status", id=mid, reason="boom",
             **{"from": "running", "to": "failed"})
        assert hook.wait_for(1)
    assert [n["kind"] for r in hook.received for n in r.body["notices"]] == ["failed"]
