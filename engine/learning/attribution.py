"""Causal attribution: which decisions go with units that succeed.

For each decision factor (:data:`engine.learning.decisions.FACTORS`) and each of its levels,
the success rate of the units that followed it, with a **Wilson score interval** (95 %):

    centre = (p̂ + z²/2n) / (1 + z²/n)
    half   = z / (1 + z²/n) · sqrt(p̂(1 - p̂)/n + z²/4n²)

(E. B. Wilson, "Probable inference, the law of succession, and statistical inference",
*JASA* 22, 1927; recommended over the Wald interval for small n and rates near 0 or 1 by
A. Agresti and B. A. Coull, "Approximate is better than 'exact' for interval estimation of
binomial proportions", *The American Statistician* 52, 1998.)

The **effect** of a level is its rate minus the rate of all other units of the same factor,
and, to keep one factor from standing in for another, a **stratified effect**: the same
difference computed inside each stratum of a second factor and averaged with
Cochran-Mantel-Haenszel weights ``n₁·n₀ / (n₁ + n₀)`` (strata where either side is empty
drop out). These are associations in observational data, not randomised effects: the prompt
variant is the one factor assigned at random (Thompson sampling), so its effect is the one
closest to causal. A finding is **strong** when its 95 % interval and the rest's do not
overlap, each side has at least ``MIN_COUNT`` units, and stratification keeps at least half
of the effect with the same sign (a difference that vanishes within strata is confounded).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from engine.learning.decisions import FACTORS
from engine.store import Store

Z95 = 1.959963984540054
MIN_COUNT = 5
STRATIFY_BY = {"specialist": "size", "model": "size", "two_pass": "size", "depth": "size",
               "prompt_variant": "size", "overlap": "size", "size": "specialist"}


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion: (low, high), in [0, 1];
    (0, 1) for ``n == 0``."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class Effect:
    factor: str
    level: str
    n: int
    successes: int
    rate: float
    low: float
    high: float
    rest_n: int
    rest_rate: float
    rest_low: float
    rest_high: float
    effect: float  # rate - rest_rate
    stratified: float | None  # CMH-weighted difference within strata of ``stratum``
    stratum: str
    strong: bool

    def as_dict(self) -> dict[str, Any]:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in self.__dict__.items()}

    def sentence(self) -> str:
        sign = "+" if self.effect >= 0 else ""
        return (f"{self.factor} = {self.level}: {self.successes}/{self.n} succeeded "
                f"({self.rate:.0%}, 95% CI {self.low:.0%}-{self.high:.0%}) vs "
                f"{self.rest_rate:.0%} for the rest ({sign}{self.effect * 100:.0f} points)")


def outcomes(store: Store, mission_id: int | None = None) -> list[tuple[dict[str, str], int]]:
    """(factors, success) of every settled decision (of ``mission_id``, else all missions)."""
    where = "success IS NOT NULL" + (" AND mission_id = ?" if mission_id else "")
    rows = store.rows("decisions", where, (mission_id,) if mission_id else (), order="unit_id")
    return [({k: str(v) for k, v in r["factors"].items()}, int(r["success"])) for r in rows]


def _stratified(data: list[tuple[dict[str, str], int]], factor: str, level: str,
                by: str) -> float | None:
    strata: dict[str, list[tuple[bool, int]]] = defaultdict(list)
    for factors, ok in data:
        strata[factors.get(by, "?")].append((factors.get(factor) == level, ok))
    num = den = 0.0
    for rows in strata.values():
        a = [ok for inside, ok in rows if inside]
        b = [ok for inside, ok in rows if not inside]
        if not a or not b:
            continue
        w = len(a) * len(b) / (len(a) + len(b))
        num += w * (sum(a) / len(a) - sum(b) / len(b))
        den += w
    return num / den if den else None


def effects(data: list[tuple[dict[str, str], int]]) -> list[Effect]:
    """Every (factor, level) with its rate, interval, effect and stratified effect; factors
    with a single level (nothing to compare) are left out."""
    out = []
    for factor in FACTORS:
        levels = sorted({f.get(factor, "?") for f, _ in data})
        if len(levels) < 2:
            continue
        for level in levels:
            inside = [ok for f, ok in data if f.get(factor, "?") == level]
            rest = [ok for f, ok in data if f.get(factor, "?") != level]
            n, s, rn, rs = len(inside), sum(inside), len(rest), sum(rest)
            low, high = wilson(s, n)
            rlow, rhigh = wilson(rs, rn)
            by = STRATIFY_BY[factor]
            effect = s / n - rs / rn
            strat = _stratified(data, factor, level, by)
            survives = strat is None or (strat * effect > 0 and abs(strat) >= abs(effect) / 2)
            strong = (n >= MIN_COUNT and rn >= MIN_COUNT and (low > rhigh or high < rlow)
                      and survives)
            out.append(Effect(factor, level, n, s, s / n, low, high, rn, rs / rn, rlow, rhigh,
                              effect, strat, by, strong))
    return out


def strongest(found: list[Effect], limit: int = 3) -> list[Effect]:
    """The strong findings, largest absolute effect first."""
    return sorted((e for e in found if e.strong), key=lambda e: -abs(e.effect))[:limit]


def report(store: Store, mission_id: int | None = None) -> dict[str, Any]:
    """The attribution section of ``mc report``: counts, effects, strong findings."""
    data = outcomes(store, mission_id)
    found = effects(data)
    return {
        "scope": f"mission {mission_id}" if mission_id else "all missions",
        "units": len(data),
        "successes": sum(ok for _, ok in data),
        "method": "success rate per decision with 95% Wilson intervals; effect = rate - rest; "
                  "stratified = Cochran-Mantel-Haenszel-weighted difference within strata",
        "effects": [e.as_dict() for e in found],
        "strong": [e.sentence() for e in strongest(found)],
    }
