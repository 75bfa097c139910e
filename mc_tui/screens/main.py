"""The dashboard: status bar, six panes, the filter bar and the footer."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Vertical
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Input

from mc_tui.widgets.approvals import ApprovalsTable
from mc_tui.widgets.cost_graph import CostGraph
from mc_tui.widgets.event_log import EventLog
from mc_tui.widgets.key_bar import KeyBar
from mc_tui.widgets.merge_queue import MergeQueueTable
from mc_tui.widgets.mission_state import Changes, MissionState
from mc_tui.widgets.plan_tree import PlanTree
from mc_tui.widgets.status_bar import StatusBar
from mc_tui.widgets.unit_details import UnitDetails
from mc_tui.widgets.worker_log import WorkerLog
from mc_tui.widgets.workers import WorkersTable

# pane number -> (container id, focus target id, title)
PANES: dict[int, tuple[str, str, str]] = {
    1: ("pane-plan", "plan-tree", "Plan"),
    2: ("pane-workers", "workers", "Workers"),
    3: ("pane-merges", "merge-queue", "Merge queue"),
    4: ("pane-approvals", "approvals", "Approvals"),
    5: ("pane-costs", "cost-graph", "Cost"),
    6: ("pane-events", "event-log", "Events"),
}


class Filterable(Protocol):
    filter_text: str

    def set_filter(self, text: str) -> None: ...


class MainScreen(Screen[None]):
    """Six panes drawn from the mission state; updated by the app's clock."""

    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    BINDINGS = [
        *(
            Binding(str(n), f"app.focus_pane({n})", f"Focus {title.lower()}", show=False, id=f"focus_{cid[5:]}")
            for n, (cid, _, title) in PANES.items()
        ),
        Binding("slash", "app.filter", "Filter", id="filter"),
        Binding("a", "app.jump_approvals", "Approvals", id="approvals"),
        Binding("p", "app.toggle_pause", "Pause/resume", id="pause"),
        Binding("s", "app.stop", "Stop", id="stop"),
        Binding("d", "app.diff", "Diff", id="diff"),
        Binding("z", "app.zoom", "Zoom pane", id="zoom"),
    ]
    ALLOW_IN_MAXIMIZED_VIEW = "#status, #keys, #filter"

    def __init__(self, *, target: str, budget: float, wall_limit: float, repo_path: Path,
                 bypass: bool = False) -> None:
        super().__init__(id="main")
        self._target = target
        self._bypass = bypass
        self._budget = budget
        self._wall_limit = wall_limit
        self._repo_path = repo_path
        self.filter_target: Widget | None = None
        self.ready = False  # children mounted

    def compose(self) -> ComposeResult:
        self.status_bar = StatusBar(target=self._target, budget=self._budget, bypass=self._bypass,
                                    id="status")
        self.plan_tree = PlanTree(id="plan-tree")
        self.unit_details = UnitDetails(self._repo_path, id="unit-details")
        self.workers_table = WorkersTable(id="workers")
        self.worker_log = WorkerLog(id="worker-log")
        self.merge_queue = MergeQueueTable(id="merge-queue")
        self.approvals_table = ApprovalsTable(id="approvals")
        self.cost_graph = CostGraph(budget=self._budget, wall_limit=self._wall_limit, id="cost-graph")
        self.event_log = EventLog(id="event-log")
        yield self.status_bar
        with Grid(id="panes"):
            with Vertical(id="pane-plan", classes="pane"):
                yield self.plan_tree
                yield self.unit_details
            with Vertical(id="pane-workers", classes="pane"):
                yield self.workers_table
                yield self.worker_log
            with Vertical(id="pane-merges", classes="pane"):
                yield self.merge_queue
            with Vertical(id="pane-approvals", classes="pane"):
                yield self.approvals_table
            with Vertical(id="pane-costs", classes="pane"):
                yield self.cost_graph
            with Vertical(id="pane-events", classes="pane"):
                yield self.event_log
        yield Input(placeholder="filter the focused list (enter keeps, esc clears)", id="filter")
        self.key_bar = KeyBar(self._key_for, id="keys")
        yield self.key_bar

    def _key_for(self, binding_id: str) -> str:
        key_for = getattr(self.app, "key_for", None)
        return key_for(binding_id) if key_for else binding_id

    def on_mount(self) -> None:
        for n, (cid, _, title) in PANES.items():
            self.query_one(f"#{cid}").border_title = f"{n} {title}"
        self.query_one("#plan-tree").focus()
        self.ready = True
        ready_hook = getattr(self.app, "main_ready", None)
        if ready_hook is not None:
            ready_hook()

    # ------------------------------------------------------------------ updates
    def apply(self, state: MissionState, changes: Changes, now: float, *, note: str = "",
              flush: bool = False) -> None:
        """Push one tick's changes into every pane."""
        if not self.ready or self.status_bar.parent is None:
            return  # not composed yet, or being torn down
        self._state = state
        self.status_bar.refresh_from(state, now, note=note)
        tree = self.plan_tree
        tree.refresh_from(state, changes)
        details = self.unit_details
        if details.unit_id is None and tree.selected_unit() is not None:
            details.show(state, tree.selected_unit())
        else:
            details.refresh_from(state, changes)
        workers = self.workers_table
        workers.refresh_from(state, changes, now)
        log = self.worker_log
        if log.slot is None and workers.selected_slot() is not None:
            log.show_slot(state, workers.selected_slot())
        else:
            log.refresh_from(state, changes, flush=flush)
        self.merge_queue.refresh_from(state, changes, now)
        self.approvals_table.refresh_from(state, changes, now)
        self.cost_graph.refresh_from(state, now, costs_changed=changes.costs or changes.mission,
                                     force=flush or changes.reloaded)
        self.event_log.refresh_from(state, changes, flush=flush)

    def set_palette(self, palette: dict[str, str]) -> None:
        for widget in (self.plan_tree, self.unit_details, self.workers_table, self.merge_queue,
                       self.approvals_table, self.cost_graph, self.status_bar):
            widget.palette = palette

    def restyle(self, state: MissionState, palette: dict[str, str], now: float) -> None:
        """Re-render coloured cells after a theme change."""
        self.set_palette(palette)
        if self.status_bar.parent is None:
            return
        self.plan_tree.restyle(palette)
        for table in (self.workers_table, self.merge_queue, self.approvals_table):
            table.reset()
        everything = Changes()
        everything.fixups = True
        self.apply(state, everything, now)
        self.cost_graph.refresh()
        if self.unit_details.unit_id:
            self.unit_details.show(state, self.unit_details.unit_id)

    # ------------------------------------------------------------------ selection
    def on_plan_tree_unit_highlighted(self, message: PlanTree.UnitHighlighted) -> None:
        state = getattr(self, "_state", None)
        if state is not None:
            self.unit_details.show(state, message.unit_id)

    def on_workers_table_slot_highlighted(self, message: WorkersTable.SlotHighlighted) -> None:
        state = getattr(self, "_state", None)
        if state is not None and message.slot != self.worker_log.slot:
            self.worker_log.show_slot(state, message.slot)

    def on_data_table_row_selected(self, message: Any) -> None:
        if message.data_table.id == "approvals":
            approval_id = self.approvals_table.selected_approval()
            if approval_id is not None:
                self.app.open_approval(approval_id)  # type: ignore[attr-defined]

    def focus_pane(self, number: int) -> None:
        _, target, _ = PANES[number]
        self.query_one(f"#{target}").focus()

    def toggle_zoom(self) -> bool:
        """Zoom the focused pane to the whole screen (or back); True if zoomed now."""
        if self.maximized is not None:
            self.minimize()
            return False
        focused = self.focused
        pane = next((a for a in (focused.ancestors if focused else []) if a.has_class("pane")), None)
        if pane is None:
            return False
        self.maximized = pane
        return True

    def selected_unit(self) -> str | None:
        return self.plan_tree.selected_unit() or self.unit_details.unit_id

    # ------------------------------------------------------------------ filter
    def start_filter(self) -> bool:
        """Open the filter bar for the focused list; False if nothing focused can filter."""
        focused = self.focused
        if focused is None or not hasattr(focused, "set_filter"):
            return False
        self.filter_target = focused
        bar = self.query_one("#filter", Input)
        bar.value = getattr(focused, "filter_text", "")
        self.add_class("-filtering")
        bar.focus()
        return True

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "filter" and self.filter_target is not None:
            self.filter_target.set_filter(event.value)  # type: ignore[attr-defined]
            self._title_filter()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            self._end_filter(keep=True)

    def on_key(self, event: Any) -> None:
        if event.key == "escape" and self.has_class("-filtering"):
            event.stop()
            self._end_filter(keep=False)

    def _end_filter(self, *, keep: bool) -> None:
        target = self.filter_target
        self.remove_class("-filtering")
        if target is not None:
            if not keep:
                target.set_filter("")  # type: ignore[attr-defined]
            self._title_filter()
            target.focus()

    def _title_filter(self) -> None:
        for n, (cid, _, title) in PANES.items():
            pane = self.query_one(f"#{cid}")
            texts = [getattr(w, "filter_text", "") for w in pane.query("*") if hasattr(w, "set_filter")]
            active = next((t for t in texts if t), "")
            pane.border_title = f"{n} {title}" + (escape(f"  /{active}") if active else "")
