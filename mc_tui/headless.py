"""``mc --no-ui``: run the engine under anyio with a Rich renderer.

On a TTY: a live status panel plus log lines. Not a TTY: plain timestamped lines.
``--json``: one JSON object per event. Approvals can be answered by typing
``y`` / ``n`` + Enter on a TTY, or from anywhere with ``mc approve ID`` / ``mc deny ID``.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable

import anyio
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from engine.config import MissionConfig
from engine.mission import MissionOutcome
from engine.models import Event
from engine.store import Store
from mc_tui.reports import fmt_duration, fmt_usd, print_summary

QUIET_KINDS = {"agent.event", "budget.projection", "cost", "command", "unit.created"}


def describe(event: Event) -> str | None:
    """One human line for an event, or None to skip it in plain output."""
    p = event.payload
    k = event.kind
    unit = f"[{event.unit_id}] " if event.unit_id else ""
    if k == "log":
        return f"{unit}{p.get('message', '')}"
    if k == "approval.status":
        by = f" by {p['by']}" if p.get("by") else ""
        why = f": {p['reason']}" if p.get("reason") else ""
        return f"approval #{p.get('id')} {p.get('to')}{by}{why}"
    if k.endswith(".status"):
        entity = k.split(".")[0]
        reason = f" ({p['reason']})" if p.get("reason") else ""
        return f"{unit}{entity} {p.get('id')}: {p.get('from')} -> {p.get('to')}{reason}"
    if k == "plan.scored":
        verdict = "accepted" if p.get("accepted") else "rejected"
        return f"plan scored {p.get('score', 0):.1f} ({verdict}, {p.get('units')} units): {p.get('feedback', '')}"
    if k == "review.scored":
        verdict = "pass" if p.get("passed") else "REJECTED"
        return f"{unit}review {p.get('score', 0):.1f} {verdict}: {p.get('feedback', '')}"
    if k == "verification.finished":
        base = " (baseline)" if p.get("baseline") else ""
        note = f": accepted, {p['note']}" if p.get("accepted") and p.get("note") else (
            f": {p['note']}" if p.get("note") else "")
        return (f"verification{base} {p.get('status')} in {p.get('duration_s', 0):.1f}s "
                f"({str(p.get('commit', ''))[:10]}){note}")
    if k == "baseline.recorded":
        return f"baseline: {p.get('summary')}"
    if k == "verification.flaky":
        return (f"flaky, not blamed: {', '.join(p.get('tests') or []) or 'unnamed tests'} "
                f"({str(p.get('commit', ''))[:10]})")
    if k == "green.promoted":
        return f"mc/green promoted {str(p.get('from', ''))[:10]} -> {str(p.get('to', ''))[:10]} ({p.get('units')})"
    if k == "push.result":
        why = f": {p['reason']}" if not p.get("ok") and p.get("reason") else ""
        return f"push {'ok' if p.get('ok') else 'FAILED'}{' (rejected)' if p.get('rejected') else ''}{why}"
    if k == "fixup.started":
        return f"{unit}fixup round {p.get('round')}: {p.get('candidates')} candidates"
    if k == "fixup.candidate" and p.get("error"):
        return f"{unit}fixup candidate {p.get('candidate')} ({p.get('approach')}): error: {p['error']}"
    if k == "fixup.candidate":
        return (f"{unit}fixup candidate {p.get('candidate')} ({p.get('approach')}): "
                f"verified={p.get('verified')} passed={p.get('tests_passed')} failed={p.get('tests_failed')}")
    if k == "fixup.winner":
        return f"{unit}fixup winner: candidate {p.get('candidate')} {p.get('reason', '')}".rstrip()
    if k == "speculation.started":
        return f"{unit}{p.get('branches')} speculation branches ({p.get('selection')} picks the winner)"
    if k == "speculation.branch":
        if not p.get("head"):
            return f"{unit}branch {p.get('branch')}: no work: {p.get('error') or p.get('agent_status')}"
        tests = ("not verified (selection by review)" if p.get("verified") is None else
                 f"verified={p.get('verified')} passed={p.get('tests_passed')} "
                 f"failed={p.get('tests_failed')}")
        return (f"{unit}branch {p.get('branch')}: {tests} "
                f"diff={p.get('diff_lines')} ${p.get('cost_usd') or 0:.2f}")
    if k == "speculation.winner" and p.get("branch") is None:
        return f"{unit}no speculation branch had work (${p.get('cost_usd') or 0:.2f})"
    if k == "speculation.winner":
        return (f"{unit}branch {p.get('branch')} wins; lost: "
                f"{', '.join(map(str, p.get('losers') or [])) or 'none'} "
                f"(${p.get('cost_usd') or 0:.2f} for all)")
    if k == "approval.requested":
        return f"APPROVAL #{p.get('id')} needed: {p.get('title')}  (mc approve {p.get('id')} / mc deny {p.get('id')})"
    if k == "approval.malformed":
        return (f"approval file {p.get('path')} line {p.get('line')} ignored: {p.get('error')}"
                f"  ({p.get('text')})")
    if k == "objective.checked":
        return f"objective check: {'met' if p.get('met') else 'not yet'}: {p.get('feedback', '')}"
    if k == "attempt.finished":
        return f"{unit}agent {p.get('status')} (${p.get('cost_usd') or 0:.2f}, {p.get('turns')} turns)"
    if k == "attempt.started":
        return f"{unit}agent started: {p.get('role')} on {p.get('backend')} ({p.get('model')}), slot {p.get('slot')}"
    if k in QUIET_KINDS:
        return None
    return f"{unit}{k} {json.dumps(p, default=str)[:200]}"


class HeadlessRenderer:
    def __init__(self, store: Store, config: MissionConfig, *, mode: str, console: Console) -> None:
        self.store = store
        self.config = config
        self.mode = mode  # "live" | "plain" | "json"
        self.console = console
        self.mission_id: int | None = None
        self.started = time.time()
        self.epoch = 0
        self.typed_approvals = False  # y / n typed on this terminal decide approvals

    def handle(self, event: Event) -> None:
        if event.kind == "mission.created" and self.mission_id is None:
            self.mission_id = event.mission_id
        if event.kind == "epoch.created":
            self.epoch += 1
        if self.mode == "json":
            self.console.out(event.model_dump_json(), highlight=False)
            return
        line = describe(event)
        if line is None:
            return
        if event.kind == "approval.requested" and self.typed_approvals:
            line += "  -- or type y / n + Enter here"
        stamp = time.strftime("%H:%M:%S", time.localtime(event.ts))
        if event.kind == "approval.requested":
            line += self._approval_detail(event)
        if self.mode == "plain":
            self.console.out(f"{stamp} {line}", highlight=False)
        else:
            self.console.print(Text(f"{stamp} ", style="dim") + Text(line), highlight=False)

    def _approval_detail(self, event: Event) -> str:
        """The plan tree under a ``plan`` approval, the diff stat under the others."""
        row = self.store.get("approvals", event.payload.get("id"))
        if row is None:
            return ""
        text = row["diff"] if row["gate"] == "plan" else row["diffstat"]
        lines = [ln for ln in (text or "").splitlines() if ln.strip()]
        if len(lines) > 40:
            lines = [*lines[:40], f"... {len(lines) - 40} more lines"]
        return "".join(f"\n           {ln}" for ln in lines)

    def status_panel(self) -> Table:
        mission = self.store.get("missions", self.mission_id) if self.mission_id else None
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold cyan")
        grid.add_column()
        if mission is None:
            grid.add_row("mission", "starting...")
            return grid
        units = [u for u in self.store.units(mission["id"]) if u["is_leaf"]]
        counts = Counter(u["status"] for u in units)
        queue = self.store.query(
            "SELECT status, COUNT(*) AS n FROM merges WHERE mission_id = ? AND status IN "
            "('queued','merging','verifying') GROUP BY status", (mission["id"],),
        )
        budget = self.config.scheduler.budget.max_per_run_usd
        grid.add_row("mission", f"#{mission['id']} {mission['status']}  epoch {self.epoch}")
        grid.add_row("units", "  ".join(f"{k}:{v}" for k, v in sorted(counts.items())) or "-")
        grid.add_row("queue", "  ".join(f"{r['status']}:{r['n']}" for r in queue) or "empty")
        grid.add_row("spend", f"{fmt_usd(mission['total_cost_usd'])} of {fmt_usd(budget)}")
        grid.add_row("wall", fmt_duration(time.time() - mission["started_at"]))
        return grid


async def run_headless(
    store: Store,
    config: MissionConfig,
    engine: Callable[[], Awaitable[MissionOutcome]],
    *,
    json_mode: bool = False,
    console: Console | None = None,
    after_id: int | None = None,
    resume_hint: str = "mc mission --resume",
) -> int:
    """Run ``engine`` while rendering its events; returns the exit code."""
    console = console or Console()
    mode = "json" if json_mode else ("live" if console.is_terminal else "plain")
    renderer = HeadlessRenderer(store, config, mode=mode, console=console)
    after = store.last_event_id() if after_id is None else after_id
    outcome: MissionOutcome | None = None

    async def follow_events() -> None:
        async for event in store.subscribe(after_id=after):
            renderer.handle(event)

    async def main() -> None:
        nonlocal outcome
        outcome = await engine()

    async def watch_signals(scope: anyio.CancelScope) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                scope.cancel()
                return

    stdin_stop = threading.Event()
    stdin_thread = _start_stdin_approvals(store, stdin_stop) if (sys.stdin.isatty() and not json_mode) else None
    renderer.typed_approvals = stdin_thread is not None
    live: Live | None = None
    if mode == "live":
        live = Live(Group(renderer.status_panel()), console=console, refresh_per_second=4,
                    transient=True)
        live.start()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(follow_events)
            with anyio.CancelScope() as engine_scope:
                tg.start_soon(watch_signals, engine_scope)
                if live is not None:
                    tg.start_soon(_refresh_live, live, renderer)
                await main()
            await anyio.sleep(0.3)  # let the last events render
            tg.cancel_scope.cancel()
    finally:
        if live is not None:
            live.stop()
        if stdin_thread is not None:
            stdin_stop.set()
    if outcome is None:  # interrupted before the engine finished (a late signal changes nothing)
        console.print(f"[yellow]interrupted[/]: state is saved; continue with `{resume_hint}`",
                      highlight=False)
        return 130
    if not json_mode:
        print_summary(console, store, outcome.mission_id)
        console.print(f"[bold]{outcome.status}[/]: {outcome.reason}", highlight=False)
    return outcome.exit_code


async def _refresh_live(live: Live, renderer: HeadlessRenderer) -> None:
    while True:
        live.update(Group(renderer.status_panel()))
        await anyio.sleep(0.5)


def _start_stdin_approvals(store: Store, stop: threading.Event) -> threading.Thread:
    """Answer the oldest pending approval with y / n typed on the terminal (until ``stop``)."""

    def loop() -> None:
        for line in sys.stdin:
            if stop.is_set():
                return
            answer = line.strip().lower()
            if answer not in ("y", "yes", "n", "no"):
                continue
            rows = store.query(
                "SELECT id FROM approvals WHERE status = 'pending' ORDER BY id LIMIT 1"
            )
            if rows:
                store.decide_approval(rows[0]["id"], answer.startswith("y"), by="terminal")

    thread = threading.Thread(target=loop, daemon=True, name="mc-stdin-approvals")
    thread.start()
    return thread
