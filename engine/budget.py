"""Budget projection: an exponential moving average of epoch cost, and spend pacing.

``EmaCostTracker`` answers "will the next epoch blow the budget?" before it starts:
``projected_next = ema * (1 + 1/sqrt(n))`` after ``n`` observed epochs (wide when little is
known, approaching the EMA as samples accumulate); with no samples it is the ``prior``.
One outlier epoch (over ``outlier_factor`` x the EMA) is clamped to ``clamp_factor`` x the
EMA before it updates the average, so a single runaway epoch does not dominate.

``cooldown_seconds`` slows a mission whose spending runs ahead of its time budget.
"""

from __future__ import annotations

import math
from typing import Any

DEFAULT_MAX_COOLDOWN = 300.0


class EmaCostTracker:
    """EMA of per-epoch cost with outlier clamping and an uncertainty-padded projection."""

    def __init__(
        self,
        alpha: float = 0.3,
        outlier_factor: float = 3.0,
        clamp_factor: float = 2.0,
        *,
        prior: float = 0.0,
    ) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ValueError("alpha must be in (0, 1]")
        if outlier_factor < 1.0 or clamp_factor < 1.0 or clamp_factor > outlier_factor:
            raise ValueError("need 1 <= clamp_factor <= outlier_factor")
        if prior < 0 or not math.isfinite(prior):
            raise ValueError("prior must be a finite cost >= 0")
        self.alpha = alpha
        self.outlier_factor = outlier_factor
        self.clamp_factor = clamp_factor
        self.prior = prior
        self._ema: float | None = None
        self._samples = 0
        self.clamped = 0  # how many observations were clamped

    @property
    def ema(self) -> float | None:
        return self._ema

    @property
    def samples(self) -> int:
        return self._samples

    def observe(self, epoch_cost: float) -> float:
        """Fold one epoch's cost into the EMA; returns the new EMA."""
        if epoch_cost < 0 or not math.isfinite(epoch_cost):
            raise ValueError(f"epoch cost must be a finite number >= 0, got {epoch_cost!r}")
        if self._ema is None:
            self._ema = float(epoch_cost)
        else:
            if self._ema > 0 and epoch_cost > self.outlier_factor * self._ema:
                epoch_cost = self.clamp_factor * self._ema
                self.clamped += 1
            self._ema = self.alpha * epoch_cost + (1.0 - self.alpha) * self._ema
        self._samples += 1
        return self._ema

    def uncertainty(self) -> float:
        """The projection's safety factor, ``1 + 1/sqrt(samples)`` (2.0 after one sample)."""
        return 1.0 + 1.0 / math.sqrt(self._samples) if self._samples else 1.0

    def projected_next(self) -> float:
        """Expected cost of the next epoch, padded for uncertainty; the prior with no samples."""
        if self._ema is None:
            return self.prior
        return self._ema * self.uncertainty()

    def would_exceed(self, spent: float, budget: float) -> bool:
        """Whether running one more epoch is projected to go over ``budget``."""
        return spent + self.projected_next() > budget

    def projection(self, spent: float, budget: float) -> dict[str, Any]:
        """The payload of a ``budget.projection`` event."""
        return {
            "spent": round(spent, 6),
            "projected_next": round(self.projected_next(), 6),
            "budget": budget,
            "ema": None if self._ema is None else round(self._ema, 6),
        }


def cooldown_seconds(
    spent: float,
    budget: float,
    elapsed: float,
    wall_limit: float,
    base: float = 0.0,
    *,
    max_cooldown: float = DEFAULT_MAX_COOLDOWN,
    slack: float = 0.0,
) -> float:
    """Seconds to pause before the next epoch, so spend does not outrun the time budget.

    When the spent share of the budget exceeds the elapsed share of the wall-time limit, the
    pause is ``base`` plus the time it would take the clock to catch up,
    ``(spent/budget - elapsed/wall_limit) * wall_limit``, capped at ``max_cooldown`` and never
    past the wall-time limit. Otherwise (or with no usable budget or limit) it is 0.
    ``slack`` (a share of the budget, e.g. 0.1) is how far spend may run ahead of the clock
    before any cooldown starts; it is subtracted from the lead.
    """
    if budget <= 0 or wall_limit <= 0:
        return 0.0
    spend_share = spent / budget
    time_share = max(elapsed, 0.0) / wall_limit
    if spend_share <= time_share + slack:
        return 0.0
    catch_up = (min(spend_share, 1.0) - time_share - slack) * wall_limit
    left = max(wall_limit - elapsed, 0.0)
    return max(0.0, min(base + catch_up, max_cooldown, left))
