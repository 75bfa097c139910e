"""The learning view (palette: "Learning: backlog and attribution"): the persistent backlog,
best first, and the attribution of outcomes to decisions with 95% Wilson intervals
(``docs/learning.md``). Read from the store when opened; ``r`` reloads."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from engine.learning.attribution import report as attribution_report
from engine.store import Store
from engine.strategy.backlog import Backlog

BACKLOG_ROWS = 30


def backlog_table(store: Store) -> Table | Text:
    rows = Backlog(store).items()[:BACKLOG_ROWS]
    if not rows:
        return Text("backlog is empty (mc discover, mc priority import FILE)", style="dim")
    table = Table(title="Backlog", title_justify="left", expand=True, box=None)
    for col in ("id", "score", "state", "track", "i/e", "age", "title"):
        table.add_column(col, no_wrap=col != "title")
    for r in rows:
        pinned = "*" if r["score_override"] is not None else ""
        table.add_row(str(r["id"]), f"{r['effective_score']:.2f}{pinned}", r["state"], r["track"],
                      f"{r['impact']}/{r['effort']}", f"{r['age_days']:g}d", r["title"])
    return table


def attribution_table(store: Store) -> Table | Text:
    section = attribution_report(store)
    if not section["effects"]:
        return Text(f"attribution: {section['units']} finished unit(s) with recorded decisions; "
                    "nothing to compare yet", style="dim")
    table = Table(title=f"Attribution ({section['units']} units, 95% Wilson intervals)",
                  title_justify="left", expand=True, box=None)
    for col in ("factor", "level", "n", "rate", "95% CI", "rest", "effect", "stratified"):
        table.add_column(col, no_wrap=True)
    for e in section["effects"]:
        strat = "-" if e["stratified"] is None else f"{e['stratified'] * 100:+.0f}"
        table.add_row(e["factor"], e["level"], str(e["n"]), f"{e['rate']:.0%}",
                      f"{e['low']:.0%}-{e['high']:.0%}", f"{e['rest_rate']:.0%}",
                      f"{e['effect'] * 100:+.0f}" + (" *" if e["strong"] else ""), strat)
    return table


class LearningScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape", "close", "Close", id="learning_close"),
        Binding("q", "close", "Close", show=False, id="learning_close_q"),
        Binding("r", "reload", "Reload", id="learning_reload"),
    ]

    def __init__(self, store: Store) -> None:
        super().__init__(id="learning-screen")
        self.store = store

    def compose(self) -> ComposeResult:
        with Vertical(id="help-dialog"):
            with VerticalScroll():
                yield Static(backlog_table(self.store), id="learning-backlog")
                yield Static(attribution_table(self.store), id="learning-attribution")
            yield Static("r reloads · esc closes · * pinned score / strong finding", id="help-foot")

    def action_reload(self) -> None:
        self.query_one("#learning-backlog", Static).update(backlog_table(self.store))
        self.query_one("#learning-attribution", Static).update(attribution_table(self.store))

    def action_close(self) -> None:
        self.dismiss(None)
