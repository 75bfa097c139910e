"""The command palette's provider (``ctrl+p``): every dashboard action, the themes.

A command is a title, a help line and a Textual action string (``"app.toggle_pause"``), so
the palette runs exactly what the key would run, through the action system, without
knowing the app's methods. Add a command by appending a :class:`PaletteCommand` to
:data:`COMMANDS` (or a function to :data:`SOURCES` for commands computed per call).
The shape follows posting's ``PostingProvider`` (a Textual ``Provider`` in its own module).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import NamedTuple

from textual.command import DiscoveryHit, Hit, Hits, Provider

from mc_tui.bindings import PANES
from themes import THEMES


class PaletteCommand(NamedTuple):
    """``title`` (what is searched), ``help`` (shown under it), ``action`` (run on select)."""

    title: str
    help: str
    action: str


COMMANDS: list[PaletteCommand] = [
    *(PaletteCommand(f"Focus: {title}", f"Focus pane {n}", f"app.focus_pane({n})")
      for n, (_, _, title) in PANES.items()),
    PaletteCommand("Mission: pause / resume", "Pause or resume dispatching new work", "app.toggle_pause"),
    PaletteCommand("Mission: stop", "Stop gracefully", "app.stop"),
    PaletteCommand("Approvals: open pending", "Jump to approvals", "app.jump_approvals"),
    PaletteCommand("Unit: show diff", "Details and diff of the selected unit", "app.diff"),
    PaletteCommand("List: filter", "Filter the focused list", "app.filter"),
    PaletteCommand("Pane: zoom / unzoom", "Fill the screen with the focused pane", "app.zoom"),
    PaletteCommand("Keys: show all", "Every key and its binding id", "app.help"),
    PaletteCommand("Projects: switch", "Attach to another registered project", "app.switch_project"),
    PaletteCommand("Learning: backlog and attribution",
                   "The backlog by priority; outcomes by decision with Wilson intervals",
                   "app.learning"),
]


def theme_commands() -> Iterator[PaletteCommand]:
    for name in THEMES:
        yield PaletteCommand(f"Theme: {name}", "Switch theme", f"app.set_theme({name!r})")


# Each source yields commands when the palette opens (discover) or searches.
SOURCES: list[Callable[[], Iterator[PaletteCommand]]] = [lambda: iter(COMMANDS), theme_commands]


def palette_commands() -> list[PaletteCommand]:
    """Every command the palette offers now, in order."""
    return [command for source in SOURCES for command in source()]


class MissionCommands(Provider):
    """Textual ``Provider`` over :func:`palette_commands` (listed in ``App.COMMANDS``)."""

    def _run(self, command: PaletteCommand) -> Callable[[], object]:
        return partial(self.app.run_action, command.action)

    async def discover(self) -> Hits:
        for command in palette_commands():
            yield DiscoveryHit(command.title, self._run(command), help=command.help)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for command in palette_commands():
            if (score := matcher.match(command.title)) > 0:
                yield Hit(score, matcher.highlight(command.title), self._run(command),
                          text=command.title, help=command.help)
