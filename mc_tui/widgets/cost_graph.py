"""Cost graph pane: cumulative spend over time against the budget, split by model or role,
with an EMA projection to the wall-time limit. Drawn with block characters (no new deps)."""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from mc_tui.bindings import bindings
from mc_tui.widgets.fmt import usd
from mc_tui.widgets.mission_state import MissionState

BLOCKS = " ▁▂▃▄▅▆▇█"
SPARK = "▁▂▃▄▅▆▇█"
EMA_ALPHA = 0.3
EMA_BUCKET_S = 60.0
REDRAW_S = 1.0
EMA_MAX_BUCKETS = 120  # older minutes weigh < 0.7**120: ignore them (bounded work per frame)


@dataclass(frozen=True)
class CostSummary:
    """Numbers behind the graph (pure; unit-tested)."""

    spent: float
    budget: float
    ema_per_min: float
    projected: float
    columns: list[float]  # cumulative spend at the end of each column
    split: dict[str, list[float]]  # key -> spend per column
    totals: dict[str, float]


def ema_rate(points: Sequence[tuple[float, float]], start: float, now: float) -> float:
    """EMA of spend per minute over fixed one-minute buckets from ``start`` to ``now``."""
    if now <= start:
        return 0.0
    start = max(start, now - EMA_MAX_BUCKETS * EMA_BUCKET_S)
    elapsed = now - start
    n = max(1, math.ceil(elapsed / EMA_BUCKET_S))
    buckets = [0.0] * n
    for ts, amount in points:
        if ts >= start:
            buckets[min(n - 1, int((ts - start) // EMA_BUCKET_S))] += amount
    # the last bucket may be partial: scale it to a full minute (not when only seconds old)
    partial = elapsed - (n - 1) * EMA_BUCKET_S
    if partial >= 10:
        buckets[-1] *= EMA_BUCKET_S / partial
    ema = buckets[0]
    for value in buckets[1:]:
        ema = EMA_ALPHA * value + (1 - EMA_ALPHA) * ema
    return ema


def summarize(
    costs: Sequence[tuple[float, float, str, str]], *, start: float, now: float, budget: float,
    wall_limit: float, width: int, by: str = "model",
) -> CostSummary:
    """Bucket cost rows ``(ts, usd, model, role)`` into ``width`` columns over the mission."""
    width = max(1, width)
    span = max(60.0, now - start)
    per_col = [0.0] * width
    split: dict[str, list[float]] = defaultdict(lambda: [0.0] * width)
    totals: dict[str, float] = defaultdict(float)
    for ts, amount, model, role in costs:
        col = min(width - 1, max(0, int((ts - start) / span * width)))
        key = model if by == "model" else role
        per_col[col] += amount
        split[key][col] += amount
        totals[key] += amount
    cumulative, running = [], 0.0
    for value in per_col:
        running += value
        cumulative.append(running)
    spent = running
    rate = ema_rate([(ts, amount) for ts, amount, _, _ in costs], start, now)
    remaining_min = max(0.0, wall_limit - (now - start)) / 60.0
    return CostSummary(
        spent=spent, budget=budget, ema_per_min=rate, projected=spent + rate * remaining_min,
        columns=cumulative, split=dict(split), totals=dict(sorted(totals.items(), key=lambda kv: -kv[1])),
    )


def legend_names(keys: list[str]) -> list[str]:
    """Labels for the legend: a prefix all keys share is dropped (``scripted-opus`` and
    ``scripted-sonnet`` become ``opus`` and ``sonnet``), as is a leading ``claude-``."""
    import os

    common = os.path.commonprefix(keys) if len(keys) > 1 else ""
    cut = common.rfind("-") + 1 if "-" in common else 0
    out = []
    for key in keys:
        name = key[cut:] or key
        out.append(name[len("claude-"):] if name.startswith("claude-") and len(name) > 7 else name)
    return out


def sparkline(values: Sequence[float]) -> str:
    top = max(values, default=0.0)
    if top <= 0:
        return "▁" * len(values)
    return "".join(SPARK[min(7, int(v / top * 7.999))] if v > 0 else " " for v in values)


class CostGraph(Widget, can_focus=True):
    """Spend vs budget over time; ``m`` switches the split between model and role."""

    BINDINGS = bindings("cost_graph")
    split_by: reactive[str] = reactive("model")

    def __init__(self, *, budget: float, wall_limit: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.budget = budget
        self.wall_limit = wall_limit
        self.palette: dict[str, str] = {}
        self._state: MissionState | None = None
        self._now = 0.0
        self._stale = True
        self._drawn_at = 0.0

    def action_toggle_split(self) -> None:
        self.split_by = "role" if self.split_by == "model" else "model"

    def refresh_from(self, state: MissionState, now: float, *, costs_changed: bool,
                     force: bool = False) -> None:
        """Redraw at most once a second (and every 5 s for the time axis)."""
        self._state = state
        old_now = self._now
        self._now = now
        self._stale = self._stale or costs_changed or int(now) // 5 != int(old_now) // 5
        mono = time.monotonic()
        if self._stale and (force or mono - self._drawn_at >= REDRAW_S):
            self._stale = False
            self._drawn_at = mono
            self.refresh()

    def render(self) -> Text:
        state = self._state
        width, height = self.size.width, self.size.height
        if state is None or state.mission is None or width < 20 or height < 4:
            return Text("no spend yet", style="dim")
        spend_c = self.palette.get("primary", "blue")
        budget_c = self.palette.get("error", "red")
        start = state.mission["started_at"]
        chart_w = max(1, width - 9 - 7)  # y labels left, 'budget' marker right
        s = summarize(
            list(state.costs), start=start, now=max(self._now, start), budget=self.budget,
            wall_limit=self.wall_limit, width=chart_w, by=self.split_by,
        )
        out = Text(no_wrap=True, overflow="crop")
        pct = s.spent / s.budget * 100 if s.budget else 0
        over = s.projected > s.budget
        # the header is cut to the width by whole parts (a wrapped header would shift the chart)
        parts: list[tuple[str, str]] = [
            (f"{usd(s.spent)} / {usd(s.budget)} ({pct:.0f}%)", "bold"),
            (f"  ema {usd(s.ema_per_min)}/min", ""),
            (f"  proj {usd(s.projected)}", budget_c if over else ""),
        ]
        projection = state.projection or {}
        if projection.get("ema") is not None and projection.get("projected_next") is not None:
            parts.append((f"  next epoch ≈{usd(projection['projected_next'])}", "dim"))
        used = 0
        for text, style in parts:
            if used + len(text) > width:
                break
            out.append(text, style=style)
            used += len(text)
        out.append("\n")
        legend_rows = min(len(s.totals), max(0, (height - 4) // 3))
        rows = max(2, height - 1 - legend_rows)
        # the budget is always on the scale: the chart shows how much of it is spent
        top = max(s.spent, s.budget, 0.01) * 1.05

        def row_of(value: float) -> int:
            return rows - 1 - min(rows - 1, int(value / top * rows))

        budget_row = row_of(s.budget) if s.budget else None
        proj_row = row_of(min(s.projected, top))
        for r in range(rows):
            label = usd(top) if r == 0 else ("$0" if r == rows - 1 else "")
            out.append(f"{label:>7} ", style="dim")
            out.append("│", style="dim")
            floor = (rows - 1 - r) / rows * top
            cell_h = top / rows
            line = []
            for value in s.columns:
                frac = (value - floor) / cell_h
                line.append(BLOCKS[8] if frac >= 1 else BLOCKS[max(0, int(frac * 8))] if frac > 0 else " ")
            text = "".join(line)
            if r == budget_row:
                for ch in text:
                    out.append("╌" if ch == " " else ch, style=budget_c if ch == " " else spend_c)
            else:
                out.append(text, style=spend_c)
            if r == budget_row:
                out.append(" budget", style=budget_c)
            elif r == proj_row:
                # where the EMA rate takes the spend by the wall-time limit
                out.append(" ◂proj" if s.projected <= top else " ↑proj", style=budget_c if over else "dim")
            out.append("\n")
        shown = list(s.totals.items())[:legend_rows]
        names = legend_names([key for key, _ in shown])
        for (key, total), name in zip(shown, names, strict=True):
            out.append(f"{name[:7]:>7} ", style="bold")
            out.append(sparkline(s.split[key]), style=self.palette.get("secondary", "magenta"))
            out.append(f" {usd(total)}\n")
        out.rstrip()
        return out
