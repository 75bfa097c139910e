"""Switch projects: the registry (``mc register``) as a list; choosing one re-attaches the
dashboard to that project's store (``mc dashboard`` restarts the app on it, see
:func:`run_dashboard`)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from engine.registry import Project, Registry, RegistryError

if TYPE_CHECKING:
    from engine.config import MissionConfig
    from engine.store import Store
    from mc_tui.app import MissionControlApp

DEFAULT_CSS = """
ProjectsScreen { align: center middle; }
#projects-dialog {
    width: 90%; max-width: 120; height: auto; max-height: 80%;
    border: round $accent; background: $surface; padding: 1 2;
}
#projects-title { text-style: bold; }
#projects-table { height: auto; max-height: 20; margin-top: 1; }
#projects-keys { margin-top: 1; color: $foreground-muted; }
"""


class ProjectsScreen(ModalScreen[str | None]):
    """The registered projects; dismissed with the chosen project's name (None: cancelled)."""

    DEFAULT_CSS = DEFAULT_CSS
    BINDINGS = [Binding("escape", "cancel", "Close", show=False, id="projects_close")]

    def __init__(self, projects: list[Project], current_store: Path | None = None) -> None:
        super().__init__(id="projects")
        self.projects = projects
        self.current_store = current_store.resolve() if current_store else None

    def compose(self) -> ComposeResult:
        with Vertical(id="projects-dialog"):
            yield Static("Switch project", id="projects-title")
            yield DataTable(id="projects-table", cursor_type="row", zebra_stripes=True)
            yield Static("[b]enter[/b] attach   [b]esc[/b] close", id="projects-keys")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("", "name", "path", "last mission", "status", "updated")
        for project in self.projects:
            current = project.store_path == self.current_store
            table.add_row(
                "●" if current else "", project.name, str(project.target_path),
                "-" if project.last_mission_id is None else str(project.last_mission_id),
                project.last_status or "-",
                time.strftime("%Y-%m-%d %H:%M", time.localtime(project.updated_at)),
                key=project.name,
            )
        table.focus()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.dismiss(event.row_key.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


def open_switcher(app: MissionControlApp) -> None:
    """Show the registry; on a choice, set ``app.switch_to`` and exit the app so that
    :func:`run_dashboard` re-attaches to the chosen project. Only an attached dashboard
    switches (an app hosting its engine would stop the mission)."""
    if not app.attach or app.engine_running():
        app.notify("switching projects is for `mc dashboard` (this app runs the mission)",
                   severity="warning", timeout=5)
        return
    try:
        projects = Registry().projects()
    except RegistryError as exc:
        app.notify(str(exc), severity="error", timeout=8)
        return
    if not projects:
        app.notify("no project registered: add one with `mc register --config PATH`",
                   severity="warning", timeout=6)
        return

    def chosen(name: str | None) -> None:
        project = next((p for p in projects if p.name == name), None)
        if project is None:
            return
        if project.store_path == app.store.path.resolve():
            app.notify(f"already showing {project.name}", timeout=3)
            return
        if not project.store_path.exists():
            app.notify(f"{project.name} has no missions yet", severity="warning", timeout=5)
            return
        app.switch_to = project
        app.exit_with(0)

    app.push_screen(ProjectsScreen(projects, app.store.path), chosen)


def run_dashboard(store: Store, *, config: MissionConfig, mission_id: int | None = None,
                  app_factory: Any = None) -> int:
    """``mc dashboard``: run the attached app; when the user switches project, close this
    store, open the chosen project's and attach again. Returns the exit code."""
    from engine.config import ConfigError
    from engine.store import Store as StoreClass
    from engine.store import StoreError
    from mc_tui.app import MissionControlApp

    factory = app_factory or MissionControlApp
    while True:
        app = factory(store, config=config, attach=True, mission_id=mission_id)
        result = app.run()
        target: Project | None = getattr(app, "switch_to", None)
        if target is None:
            store.close()
            return result if isinstance(result, int) else (app.return_code or 0)
        try:
            next_config = target.load_config()
            next_store = StoreClass(target.store_path)
        except (ConfigError, StoreError) as exc:  # stay on this project, say why
            print(f"mc dashboard: cannot attach to {target.name}: {exc}", file=sys.stderr)
            continue
        store.close()
        config, store, mission_id = next_config, next_store, None
