"""The Mission Control Textual app.

It hosts the engine as one exclusive worker (``mc``, ``mc mission``, ``mc demo``) or attaches
to a mission another process runs (``mc dashboard``). Either way everything it shows comes
from the store: a reader worker turns store events into cheap "dirty" marks, and a clock
(``config.ui.refresh_hz``) re-reads those rows by id and updates the panes by key.
Its only writes are approvals and pause/resume/stop commands.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
from textual import events
from textual.app import App
from textual.binding import Binding
from textual.screen import Screen
from textual.worker import Worker, WorkerState, get_current_worker

from engine.config import MissionConfig
from engine.models import ApprovalStatus
from engine.store import Store
from mc_tui.bindings import Keymap, all_bindings, bindings
from mc_tui.commands import MissionCommands
from mc_tui.screens.approval_modal import ApprovalModal
from mc_tui.screens.confirm import ConfirmScreen
from mc_tui.screens.diff import DiffScreen
from mc_tui.screens.help import HelpScreen
from mc_tui.screens.main import MainScreen
from mc_tui.screens.too_small import MIN_HEIGHT, MIN_WIDTH, TooSmallScreen
from mc_tui.widgets.fmt import palette_of
from mc_tui.widgets.mission_state import Changes, MissionState, PendingChanges
from themes import STYLESHEET, THEMES

__all__ = ["EXIT_INTERRUPTED", "MissionControlApp", "all_bindings", "run_tui", "save_screenshot"]
EXIT_INTERRUPTED = 130
FINISHED = {"completed", "not_pushed", "stopped", "stalled", "failed", "interrupted"}
READER_YIELD_EVERY = 200  # give the UI loop a turn while catching up on a burst
ATTACH_POLL_S = 0.1  # attached: how often the reader thread looks for new events


class MissionControlApp(App[int]):
    """Dashboard (and host) of one mission."""

    CSS_PATH = str(STYLESHEET)
    TITLE = "Mission Control"
    BINDINGS = bindings("app")
    COMMANDS = App.COMMANDS | {MissionCommands}
    STOP_GRACE_S = 5.0  # how long quit waits for the engine to stop after "stop"

    def __init__(
        self,
        store: Store,
        *,
        config: MissionConfig,
        engine: Callable[[], Awaitable[int]] | None = None,
        mission_id: int | None = None,
        attach: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.store = store
        self.config = config
        self.engine_factory = engine
        self.attach = attach
        self.clock = clock
        self.follow_newest = mission_id is None
        self.state = MissionState(store, mission_id)
        self._pending = PendingChanges(follow_newest=self.follow_newest)
        self._pending_lock = threading.Lock()
        self._initial: Changes | None = None
        self._start_event_id = 0
        self.last_seen_event_id = 0  # newest event the reader has buffered
        self.engine_worker: Worker[int] | None = None
        self.engine_code: int | None = None
        self.engine_error: str | None = None
        self.pause_wanted: bool | None = None  # requested but not yet reflected by the engine
        self.stop_requested = False
        self.keymap = Keymap(config.ui.keys, display=lambda key: self.get_key_display(Binding(key, "")))
        self.keymap_warnings: list[str] = list(self.keymap.warnings)
        self.ticks = 0
        self.first_paint_at: float | None = None  # perf_counter() of the first painted frame
        self.data_painted_at: float | None = None  # ... of the first frame showing the mission
        self.loaded = False  # the mission has been read from the store
        self._main: MainScreen | None = None
        self.switch_to: Any = None  # a registry Project chosen in the project switcher
        # Themes before the first frame: setting one later restyles every widget.
        for theme in THEMES.values():
            self.register_theme(theme)
        self.theme = config.ui.theme

    # ------------------------------------------------------------------ start-up
    def get_default_screen(self) -> Screen[Any]:
        cfg = self.config
        self._main = MainScreen(
            target=cfg.target.name,
            budget=cfg.scheduler.budget.max_per_run_usd,
            wall_limit=cfg.continuous.max_wall_time_seconds,
            repo_path=Path(cfg.target.path),
            bypass=cfg.agent.permission_mode == "bypassPermissions",
            keymap=self.keymap,
        )
        return self._main

    @property
    def main(self) -> MainScreen:
        assert self._main is not None
        return self._main

    def on_mount(self) -> None:
        self.theme_changed_signal.subscribe(self, lambda _theme: self._restyle())
        self._apply_keymap()
        if self.engine_factory is not None and not self.attach:
            self.engine_worker = self.run_worker(
                self.engine_factory(), exclusive=True, group="engine", name="engine",
                exit_on_error=False,
            )
        self.set_interval(1 / self.config.ui.refresh_hz, self._tick, name="ui clock")
        self._check_size(self.size.width, self.size.height)
        # The first frame shows the empty dashboard at once; the mission is read after it.
        self.call_after_refresh(self._after_first_paint)

    def _after_first_paint(self) -> None:
        if self.first_paint_at is None:
            self.first_paint_at = time.perf_counter()
        self._load()
        self._tick()
        self.call_after_refresh(self._mark_data_painted)

    def _load(self) -> None:
        """Read the mission and start following its events (once, after the first frame)."""
        if self.loaded:
            return
        self.loaded = True
        # Events up to here are read from the tables; the reader takes every later one.
        self._start_event_id = self.last_seen_event_id = self.store.last_event_id()
        self._initial = self.state.load(upto_event=self._start_event_id)
        if self.attach:
            self.run_worker(self._follow_events, thread=True, group="reader", name="event reader",
                            exit_on_error=False)
        else:
            self.run_worker(self._read_events(), group="reader", name="event reader",
                            exit_on_error=False)

    def _mark_data_painted(self) -> None:
        if self.data_painted_at is None:
            self.data_painted_at = time.perf_counter()
            # Everything built so far (modules, CSS, widgets) lives as long as the app: move it
            # out of the collector's reach, so a full collection scans only new objects
            # (it took 50-60 ms otherwise: visible stutters on key presses).
            gc.freeze()

    def on_unmount(self) -> None:
        if self.data_painted_at is not None:
            gc.unfreeze()  # hand what we froze back to the collector (tests run many apps)

    def _apply_keymap(self) -> None:
        """Bind the registry's keys after ``[ui] keys``; unknown ids are warned about."""
        for msg in self.keymap.warnings:
            self.log.warning(msg)
            self.notify(msg, severity="warning", timeout=8)
        self.set_keymap(self.keymap.overrides)
        if self._main is not None:
            self._main.set_keymap(self.keymap)

    # ------------------------------------------------------------------ live data
    async def _read_events(self) -> None:
        """Hosted engine: buffer every event it publishes (cheap); the clock applies them."""
        seen = 0
        async for event in self.store.subscribe(after_id=self._start_event_id):
            with self._pending_lock:
                self._pending.add(event, self.state.mission_id)
            self.last_seen_event_id = event.id
            seen += 1
            if seen % READER_YIELD_EVERY == 0:
                await anyio.sleep(0)

    def _follow_events(self) -> None:
        """Attached: tail the events table in a thread, so reading and decoding a burst of
        events never holds up the UI loop."""
        worker = get_current_worker()
        last = self._start_event_id
        while not worker.is_cancelled:
            batch = self.store.events_after(last)
            if not batch:
                time.sleep(ATTACH_POLL_S)
                continue
            with self._pending_lock:
                for event in batch:
                    self._pending.add(event, self.state.mission_id)
            last = batch[-1].id
            self.last_seen_event_id = last

    def _tick(self, *, flush: bool = False) -> None:
        """Apply the coalesced changes (once per clock tick) and refresh time-based text."""
        if self._main is None or not self._main.ready or not self.loaded:
            return
        self.ticks += 1
        now = self.clock()
        if self._initial is not None:
            self._main.set_palette(palette_of(self.current_theme))
            self._main.apply(self.state, self._initial, now, note=self.note())
            self._initial = None
        with self._pending_lock:
            pending, self._pending = self._pending, PendingChanges(follow_newest=self.follow_newest)
        changes = self.state.apply(pending)
        if changes.mission:
            self._sync_pause()
        self._main.apply(self.state, changes, now, note=self.note(), flush=flush)
        self._handle_approvals(now)

    def refresh_now(self) -> None:
        """Apply pending changes immediately (tests and screenshots)."""
        self._load()
        self._tick(flush=True)

    async def caught_up(self, timeout: float = 5.0) -> bool:
        """Wait until the reader has every event now in the store, then apply them."""
        self._load()
        target = self.store.last_event_id()
        with anyio.move_on_after(timeout):
            while self.last_seen_event_id < target:
                await anyio.sleep(0.01)
        self._tick(flush=True)
        return self.last_seen_event_id >= target

    def note(self) -> str:
        parts = []
        if self.attach:
            parts.append("attached")
        if self.stop_requested and self._mission_active():
            parts.append("stop requested…")
        elif self.pause_wanted is True:
            parts.append("pause requested…")
        elif self.pause_wanted is False:
            parts.append("resume requested…")
        if self.engine_error:
            parts.append(f"engine error: {self.engine_error}")
        elif self.engine_code is not None:
            parts.append(f"engine finished (exit {self.engine_code}) · q quits")
        return " · ".join(parts)

    def on_main_screen_ready(self, _message: MainScreen.Ready) -> None:
        """The dashboard's widgets exist (the mission is drawn after the first frame)."""
        self.main.set_palette(palette_of(self.current_theme))
        if self.loaded:
            self._tick()
        else:
            self.main.status_bar.show_loading()

    def _restyle(self) -> None:
        if self._main is not None and self._main.ready and self._initial is None:
            self._main.restyle(self.state, palette_of(self.current_theme), self.clock())

    # ------------------------------------------------------------------ engine worker
    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker is not self.engine_worker:
            return
        if event.state == WorkerState.SUCCESS:
            result = event.worker.result
            self.engine_code = int(result) if isinstance(result, int) else 0
        elif event.state == WorkerState.ERROR:
            error = event.worker.error
            self.engine_error = f"{type(error).__name__}: {error}"
            self.engine_code = 1
            self.notify(self.engine_error, title="Engine failed", severity="error", timeout=30)
        elif event.state == WorkerState.CANCELLED:
            self.engine_code = EXIT_INTERRUPTED

    def engine_running(self) -> bool:
        return self.engine_worker is not None and not self.engine_worker.is_finished

    def _mission_active(self) -> bool:
        m = self.state.mission
        return m is not None and m["status"] not in FINISHED

    # ------------------------------------------------------------------ approvals
    def _open_modal(self) -> ApprovalModal | None:
        for screen in self.screen_stack:
            if isinstance(screen, ApprovalModal):
                return screen
        return None

    def _handle_approvals(self, now: float) -> None:
        if not self.screen_stack:
            return  # a refresh tick racing the app's shutdown: nothing to show any more
        modal = self._open_modal()
        if modal is not None and modal.decided:
            # answered: its Decided message records the answer and closes it; one that was
            # covered then (a too-small terminal) is closed once it is on top again
            row = self.state.approvals.get(modal.approval_id)
            if self.screen is modal and row is not None and row["status"] != ApprovalStatus.PENDING:
                modal.dismiss(None)
            return
        if modal is not None:
            row = self.state.approvals.get(modal.approval_id)
            if row is not None and row["status"] != ApprovalStatus.PENDING:
                if self.screen is modal:
                    modal.dismiss(None)  # decided elsewhere: close without deciding
                    by = row.get("decided_by") or "the engine"
                    self.notify(f"approval #{row['id']} {row['status']} by {by}", timeout=6)
                return
            modal.update_countdown(now)
            return
        if self.screen is not self._main:
            return  # never stack over help, diff or a question
        pending = self.state.pending_approvals()
        if pending:
            self.open_approval(pending[0]["id"])

    def open_approval(self, approval_id: int) -> None:
        row = self.state.approvals.get(approval_id)
        if row is None or row["status"] != ApprovalStatus.PENDING or self._open_modal() is not None:
            return
        unit = self.state.units.get(row.get("unit_id") or "")
        modal = ApprovalModal(row, unit, repo_path=Path(self.config.target.path), now=self.clock(),
                              dark=self.current_theme.dark)
        self.push_screen(modal)

    def on_main_screen_approval_selected(self, message: MainScreen.ApprovalSelected) -> None:
        self.open_approval(message.approval_id)

    def on_approval_modal_decided(self, message: ApprovalModal.Decided) -> None:
        """Record the answer, then close the modal that asked."""
        self._decide(message.approval_id, message.approved)
        modal = self._open_modal()
        if modal is not None and modal.approval_id == message.approval_id and self.screen is modal:
            modal.dismiss(message.approved)

    def _decide(self, approval_id: int, approved: bool) -> None:
        if self.store.decide_approval(approval_id, approved, by="tui"):
            self.notify(f"approval #{approval_id} {'approved' if approved else 'denied'}", timeout=4)
        else:
            self.notify(f"approval #{approval_id} was already decided", severity="warning")
        with self._pending_lock:
            self._pending.dirty["approvals"].add(approval_id)

    # ------------------------------------------------------------------ actions
    def action_focus_pane(self, number: int) -> None:
        if self.screen is self._main:
            self.main.focus_pane(number)

    def action_filter(self) -> None:
        if self.screen is self._main and not self.main.start_filter():
            self.notify("focus a list first (1-6), then / filters it", timeout=3)

    def action_jump_approvals(self) -> None:
        self._ensure_loaded()
        self.action_focus_pane(4)
        pending = self.state.pending_approvals()
        if pending and self.screen is self._main:
            self.open_approval(pending[0]["id"])

    def _ensure_loaded(self) -> None:
        """A key pressed before the mission was read (right after the first frame): read it now."""
        if not self.loaded:
            self._load()
            self._tick()

    def _mission_id_or_warn(self) -> int | None:
        self._ensure_loaded()
        if self.state.mission_id is None or self.state.mission is None:
            self.notify("no mission yet", severity="warning", timeout=3)
            return None
        if not self._mission_active():
            self.notify(f"mission #{self.state.mission_id} is {self.state.mission['status']}",
                        severity="warning", timeout=3)
            return None
        return self.state.mission_id

    def action_toggle_pause(self) -> None:
        mission_id = self._mission_id_or_warn()
        if mission_id is None:
            return
        if self.pause_wanted is not None:
            paused = self.pause_wanted  # a command not yet obeyed: the key takes it back
        else:  # the store is the truth (the in-memory view may be a refresh behind)
            row = self.store.get("missions", mission_id)
            paused = row is not None and row["status"] == "paused"
        command = "resume" if paused else "pause"
        self.store.send_command(mission_id, command)
        self.pause_wanted = command == "pause"
        self.notify(f"{command} requested", timeout=3)

    def _sync_pause(self) -> None:
        status = self.state.mission["status"] if self.state.mission else None
        if (self.pause_wanted is True and status == "paused") or (
            self.pause_wanted is False and status != "paused"
        ) or status in FINISHED:
            self.pause_wanted = None

    def action_stop(self) -> None:
        mission_id = self._mission_id_or_warn()
        if mission_id is None:
            return

        def answer(yes: bool | None) -> None:
            if yes:
                self.store.send_command(mission_id, "stop")
                self.stop_requested = True
                self.notify("stop requested: running agents finish, nothing new starts", timeout=4)

        self.push_screen(
            ConfirmScreen("Stop the mission gracefully?",
                          "Agents running now finish; nothing new is dispatched.", name="stop"),
            answer,
        )

    def action_diff(self) -> None:
        if self.screen is not self._main:
            return
        self._ensure_loaded()
        unit_id = self.main.selected_unit()
        if unit_id is None:
            self.notify("select a unit in the plan tree (1) first", timeout=3)
            return
        self.push_screen(DiffScreen(self.state, unit_id, repo_path=Path(self.config.target.path),
                                    palette=palette_of(self.current_theme),
                                    dark=self.current_theme.dark))

    def action_learning(self) -> None:
        """The backlog and the outcome attribution (palette: "Learning: ...")."""
        from mc_tui.screens.learning import LearningScreen

        if not isinstance(self.screen, LearningScreen):
            self.push_screen(LearningScreen(self.store))

    def action_switch_project(self) -> None:
        from mc_tui.screens.projects import open_switcher

        open_switcher(self)

    def action_zoom(self) -> None:
        if self.screen is self._main:
            self.main.toggle_zoom()

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        self.push_screen(HelpScreen(self.help_rows()))

    def key_for(self, binding_id: str) -> str:
        """The key shown for a binding id, after the user's keymap."""
        return self.keymap.key_for(binding_id)

    def help_rows(self) -> list[tuple[str, str, str]]:
        """(key, description, binding id) of every registered binding, then the palette."""
        return self.keymap.help_rows()

    def action_set_theme(self, name: str) -> None:
        """Switch to the theme ``name`` (the palette's "Theme: ..." commands)."""
        self.theme = name

    async def action_quit(self) -> None:
        if not self.engine_running():
            self.exit_with(self.engine_code if self.engine_code is not None else 0)
            return

        def answer(yes: bool | None) -> None:
            if yes:
                self.run_worker(self._stop_and_exit(), group="quit", name="quit")

        self.push_screen(
            ConfirmScreen("A mission is running. Stop it and quit?",
                          f"mc sends 'stop' and waits up to {self.STOP_GRACE_S:.0f}s for the engine.",
                          name="quit"),
            answer,
        )

    async def _stop_and_exit(self) -> None:
        if self.state.mission_id is not None and self._mission_active():
            self.store.send_command(self.state.mission_id, "stop")
            self.stop_requested = True
        worker = self.engine_worker
        with anyio.move_on_after(self.STOP_GRACE_S):
            while worker is not None and not worker.is_finished:
                await anyio.sleep(0.05)
        if worker is not None and not worker.is_finished:
            worker.cancel()
            self.exit_with(EXIT_INTERRUPTED)
            return
        self.exit_with(self.engine_code if self.engine_code is not None else EXIT_INTERRUPTED)

    def exit_with(self, code: int) -> None:
        """Exit; ``code`` is both the app's result and its return code."""
        self.exit(code, return_code=code)

    # ------------------------------------------------------------------ terminal size
    def on_resize(self, event: events.Resize) -> None:
        self._check_size(event.size.width, event.size.height)

    def _check_size(self, width: int, height: int) -> None:
        small = width < MIN_WIDTH or height < MIN_HEIGHT
        top = self.screen_stack[-1] if self.screen_stack else None
        if small and not isinstance(top, TooSmallScreen):
            self.push_screen(TooSmallScreen(id="too-small"))
        elif small and isinstance(top, TooSmallScreen):
            top.show_size(width, height)
        elif not small and isinstance(top, TooSmallScreen):
            self.pop_screen()


def run_tui(
    store: Store,
    *,
    config: MissionConfig,
    engine: Callable[[], Awaitable[int]] | None = None,
    mission_id: int | None = None,
    attach: bool = False,
) -> int:
    """Run the app in the terminal; returns the process exit code."""
    app = MissionControlApp(store, config=config, engine=engine, mission_id=mission_id, attach=attach)
    result = app.run()
    if isinstance(result, int):
        return result
    return app.return_code or 0  # 1 if the app itself crashed


async def save_screenshot(
    store: Store,
    *,
    config: MissionConfig,
    path: str | Path,
    size: tuple[int, int] = (120, 40),
    clock: Callable[[], float] | None = None,
    mission_id: int | None = None,
) -> str:
    """Render the dashboard headless and write an SVG (README screenshots, docs)."""
    app = MissionControlApp(store, config=config, mission_id=mission_id, attach=True,
                            clock=clock or time.time)
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        app.refresh_now()
        await pilot.pause()
        target = Path(path)
        return app.save_screenshot(target.name, str(target.parent))
