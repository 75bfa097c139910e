"""Rich renderings of the store for `mc status`, `mc history` and `mc summary`."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from engine.store import Store


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def fmt_usd(value: float | None) -> str:
    return f"${(value or 0):.2f}"


def mission_duration(mission: dict[str, Any]) -> float:
    """Time the mission actually ran (downtime between a crash and its resume excluded)."""
    if mission.get("active_s"):
        return float(mission["active_s"])
    end = mission.get("ended_at") or time.time()
    return end - mission["started_at"]


def print_history(console: Console, store: Store, *, limit: int = 20) -> None:
    table = Table(title="Missions", title_justify="left")
    for col in ("id", "status", "objective", "epochs", "merged", "cost", "duration", "started"):
        table.add_column(col, justify="right" if col in ("id", "epochs", "merged", "cost") else "left")
    missions = store.query("SELECT * FROM missions ORDER BY id DESC LIMIT ?", (limit,))
    for m in missions:
        epochs = store.query("SELECT COUNT(*) AS n FROM epochs WHERE mission_id = ?", (m["id"],))[0]["n"]
        merged = store.query(
            "SELECT COUNT(*) AS n FROM units WHERE mission_id = ? AND status = 'merged' AND is_leaf",
            (m["id"],)
        )[0]["n"]
        table.add_row(
            str(m["id"]), m["status"], _clip(m["objective"], 48), str(epochs), str(merged),
            fmt_usd(m["total_cost_usd"]), fmt_duration(mission_duration(m)),
            time.strftime("%Y-%m-%d %H:%M", time.localtime(m["started_at"])),
        )
    console.print(table)


def print_status(console: Console, store: Store, mission_id: int | None = None, *,
                 config_path: str | None = None) -> None:
    from engine.resilience.liveness import is_lost, resume_command, silent_for

    mission = store.get("missions", mission_id) if mission_id else store.latest_mission()
    if mission is None:
        console.print("no missions yet")
        return
    units = store.units(mission["id"])
    counts = Counter(u["status"] for u in units if u["is_leaf"])  # work units, not plan nodes
    epochs = store.query(
        "SELECT * FROM epochs WHERE mission_id = ? ORDER BY number", (mission["id"],)
    )
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    now = time.time()
    lost = is_lost(mission, now)  # its engine died without closing the row
    if lost:
        head.add_row("mission", Text(f"#{mission['id']} lost", style="bold red"))
    else:
        head.add_row("mission", f"#{mission['id']} {mission['status']}")
    head.add_row("objective", mission["objective"])
    head.add_row("epoch", str(epochs[-1]["number"]) if epochs else "-")
    head.add_row("spend", fmt_usd(mission["total_cost_usd"]))
    head.add_row("wall time", fmt_duration(mission_duration(mission)))
    head.add_row("units", ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none")
    if mission.get("outcome"):
        head.add_row("outcome", mission["outcome"])
    for key, value in facts_rows(store, mission["id"]):
        head.add_row(key, value)
    console.print(head)
    if lost:  # the whole command, unwrapped, so it can be copied
        console.print(Text.assemble(
            ("lost", "bold red"), f": no heartbeat for {fmt_duration(silent_for(mission, now))} "
            f"(the row still says {mission['status']}); resume with: ",
            (resume_command(config_path), "bold")), soft_wrap=True)

    if units:
        table = Table(title="Units", title_justify="left")
        for col in ("id", "title", "specialist", "status", "attempts", "review", "cost", "reason"):
            table.add_column(col)
        for u in units:
            if not u["is_leaf"]:
                continue
            table.add_row(
                u["id"], _clip(u["title"], 40), u["specialist"], u["status"],
                str(u["attempt_count"]),
                f"{u['review_score']:.1f}" if u["review_score"] is not None else "-",
                fmt_usd(u["cost_usd"]), _clip(u["reason"] or "", 40),
            )
        console.print(table)
        failed = [u for u in units if u["is_leaf"] and u["status"] == "failed" and u["reason"]]
        for u in failed[:10]:  # the whole reason: a denial names the refused calls
            console.print(Text.assemble((u["id"], "red"), " ", _clip(u["reason"], 300)),
                          soft_wrap=True)

    merges = store.query(
        "SELECT * FROM merges WHERE mission_id = ? ORDER BY id DESC LIMIT 15", (mission["id"],)
    )
    if merges:
        table = Table(title="Merge queue (latest)", title_justify="left")
        for col in ("id", "unit", "branch", "status", "commit", "reason"):
            table.add_column(col)
        for m in merges:
            table.add_row(
                str(m["id"]), m["unit_id"] or "-", m["branch"], m["status"],
                (m["candidate_commit"] or m["head_commit"] or "")[:10], _clip(m["reason"] or "", 40),
            )
        console.print(table)


def facts_rows(store: Store, mission_id: int) -> list[tuple[str, str]]:
    """``mc status`` lines for the baseline, flaky tests and the push (when there are any)."""
    from engine.report import baseline_facts, flaky_tests, push_facts
    from engine.resilience.board import breaker_rows

    rows: list[tuple[str, str]] = []
    baseline = baseline_facts(store, mission_id)
    if baseline is not None:
        text = baseline["summary"] or baseline["status"]
        if baseline["status"] != "passed":
            text += " (there before any change: reported here, not blamed on units)"
            if baseline["unverifiable_merges"]:
                text += f"; {baseline['unverifiable_merges']} merge(s) not verifiable"
        rows.append(("baseline", text))
    flaky = flaky_tests(store, mission_id)
    if flaky:
        rows.append(("flaky", ", ".join(flaky)))
    breakers = breaker_rows(store, mission_id)
    if breakers:  # circuit breakers per component (engine/resilience/board.py), worst first
        rows.append(("breakers", ", ".join(
            f"{b['component']} {b['state']}" + (f" ({b['failures']} failures)" if b["failures"] else "")
            for b in breakers)))
    push = push_facts(store, mission_id)
    if push is not None:
        where = f" to {push['remote']}/{push['branch']}" if push.get("remote") else ""
        commit = (push.get("commit") or "")[:10]
        rows.append(("push", f"pushed {commit}{where}" if push["ok"]
                     else f"not pushed: {push['reason']}"))
    return rows


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def print_summary(console: Console, store: Store, mission_id: int | None = None) -> None:
    """Units, merges and cost per model of one mission (default: the latest)."""
    from engine.report import build_report

    mission = store.get("missions", mission_id) if mission_id else store.latest_mission()
    if mission is None:
        console.print("no missions yet")
        return
    report = build_report(store, mission["id"])
    m = report["mission"]
    console.print(
        f"[bold]Mission #{m['id']}[/] {m['status']}: {m['objective']}\n"
        f"outcome: {m['outcome'] or '-'}   duration: {fmt_duration(m['duration_s'])}   "
        f"cost: {fmt_usd(m['total_cost_usd'])}",
        highlight=False,
    )
    leaves = [u for u in report["units"] if u["is_leaf"]]
    table = Table(title="Units", title_justify="left")
    for col in ("unit", "title", "status", "tries", "review", "cost"):
        table.add_column(col)
    for u in leaves:
        table.add_row(
            u["id"], _clip(u["title"], 44), u["status"], str(u["attempt_count"]),
            f"{u['review_score']:.1f}" if u["review_score"] is not None else "-", fmt_usd(u["cost_usd"]),
        )
    console.print(table)
    counts = Counter(x["status"] for x in report["merges"])
    vcounts = Counter(x["status"] for x in report["verifications"])
    console.print(
        "merges: " + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none")
        + "   verifications: " + (", ".join(f"{k} {v}" for k, v in sorted(vcounts.items())) or "none"),
        highlight=False,
    )
    cost = Table(title="Cost by model", title_justify="left")
    for col in ("model", "role", "calls", "usd"):
        cost.add_column(col)
    for row in report["cost"]["by_model_role"]:
        estimated = " (est.)" if row["estimated_rows"] else ""
        cost.add_row(str(row["model"]), row["role"], str(row["calls"]), fmt_usd(row["usd"]) + estimated)
    console.print(cost)


def print_projects(console: Console, projects: list[Any]) -> None:
    """The registry as a table (``projects``: :class:`engine.registry.Project` items)."""
    table = Table(title="Registered projects", title_justify="left")
    for column in ("name", "path", "config", "last mission", "status", "updated"):
        table.add_column(column, overflow="fold", no_wrap=column in ("status", "updated"))
    for project in projects:
        config = project.config_path  # shown relative to the project when it lives there
        if config.is_relative_to(project.target_path):
            config = config.relative_to(project.target_path)
        table.add_row(
            project.name, str(project.target_path), str(config),
            str(project.last_mission_id) if project.last_mission_id is not None else "-",
            project.last_status or "-",
            time.strftime("%Y-%m-%d %H:%M", time.localtime(project.updated_at)),
        )
    console.print(table)


def print_attribution(console: Console, section: dict[str, Any]) -> None:
    """The attribution section of a report: success rate per decision with 95% Wilson
    intervals, effect vs the rest, stratified effect (``docs/learning.md``)."""
    if not section["effects"]:
        console.print(f"attribution: {section['units']} finished unit(s) with recorded decisions; "
                      "no factor with two levels to compare yet", highlight=False)
        return
    table = Table(title=f"Attribution ({section['scope']}, {section['units']} units)",
                  title_justify="left")
    for col in ("factor", "level", "n", "success", "95% CI", "vs rest", "effect", "stratified"):
        table.add_column(col)
    for e in section["effects"]:
        strat = "-" if e["stratified"] is None else f"{e['stratified'] * 100:+.0f} ({e['stratum']})"
        table.add_row(e["factor"], e["level"], str(e["n"]), f"{e['rate']:.0%}",
                      f"{e['low']:.0%}-{e['high']:.0%}", f"{e['rest_rate']:.0%} of {e['rest_n']}",
                      f"{e['effect'] * 100:+.0f}" + (" *" if e["strong"] else ""), strat)
    console.print(table)
    for line in section["strong"]:
        console.print(f"strong: {line}", highlight=False)
