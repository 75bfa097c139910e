"""EMA cost tracking, outlier clamping, projection and cooldown."""

from __future__ import annotations

import math

import pytest

from engine.budget import DEFAULT_MAX_COOLDOWN, EmaCostTracker, cooldown_seconds


def test_first_sample_seeds_the_ema() -> None:
    t = EmaCostTracker()
    assert t.ema is None and t.samples == 0
    assert t.observe(2.0) == 2.0
    assert t.ema == 2.0 and t.samples == 1


def test_ema_update() -> None:
    t = EmaCostTracker(alpha=0.3)
    t.observe(2.0)
    assert t.observe(4.0) == pytest.approx(0.3 * 4 + 0.7 * 2)  # 2.6, not an outlier (< 3x)
    assert t.clamped == 0


def test_outlier_is_clamped_before_updating() -> None:
    t = EmaCostTracker(alpha=0.3, outlier_factor=3.0, clamp_factor=2.0)
    t.observe(1.0)
    # 10.0 > 3 x 1.0: clamped to 2 x 1.0 = 2.0 -> ema = 0.3*2 + 0.7*1 = 1.3
    assert t.observe(10.0) == pytest.approx(1.3)
    assert t.clamped == 1
    # exactly 3x is not an outlier
    t2 = EmaCostTracker()
    t2.observe(1.0)
    assert t2.observe(3.0) == pytest.approx(0.3 * 3 + 0.7)
    assert t2.clamped == 0


def test_zero_ema_does_not_freeze() -> None:
    t = EmaCostTracker()
    t.observe(0.0)
    assert t.observe(5.0) == pytest.approx(1.5)


def test_projection_shrinks_with_samples() -> None:
    t = EmaCostTracker(prior=3.0)
    assert t.projected_next() == 3.0
    t.observe(2.0)
    assert t.projected_next() == pytest.approx(2.0 * 2.0)  # 1 + 1/sqrt(1)
    for _ in range(3):
        t.observe(2.0)
    assert t.ema == pytest.approx(2.0)
    assert t.projected_next() == pytest.approx(2.0 * 1.5)  # 1 + 1/sqrt(4)
    factors = []
    for _ in range(20):
        t.observe(2.0)
        factors.append(t.uncertainty())
    assert factors == sorted(factors, reverse=True) and factors[-1] == pytest.approx(
        1 + 1 / math.sqrt(24)
    )


def test_would_exceed() -> None:
    t = EmaCostTracker()
    t.observe(1.0)  # projection 2.0
    assert not t.would_exceed(spent=8.0, budget=10.0)
    assert t.would_exceed(spent=8.01, budget=10.0)
    assert not EmaCostTracker().would_exceed(spent=9.9, budget=10.0)  # prior 0
    assert EmaCostTracker(prior=1.0).would_exceed(spent=9.5, budget=10.0)


def test_projection_payload() -> None:
    t = EmaCostTracker()
    assert t.projection(1.0, 10.0) == {
        "spent": 1.0,
        "projected_next": 0.0,
        "budget": 10.0,
        "ema": None,
    }
    t.observe(0.5)
    assert t.projection(1.5, 10.0)["projected_next"] == 1.0


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf])
def test_rejects_bad_costs(bad: float) -> None:
    with pytest.raises(ValueError):
        EmaCostTracker().observe(bad)


def test_rejects_bad_parameters() -> None:
    for kwargs in [
        dict(alpha=0.0),
        dict(alpha=1.5),
        dict(outlier_factor=2.0, clamp_factor=3.0),
        dict(clamp_factor=0.5),
    ]:
        with pytest.raises(ValueError):
            EmaCostTracker(**kwargs)
    with pytest.raises(ValueError):
        EmaCostTracker(prior=-1)


def test_cooldown_zero_when_on_pace() -> None:
    assert cooldown_seconds(spent=5, budget=10, elapsed=3600, wall_limit=7200) == 0.0
    assert cooldown_seconds(spent=2, budget=10, elapsed=3600, wall_limit=7200) == 0.0
    assert cooldown_seconds(spent=2, budget=0, elapsed=0, wall_limit=7200) == 0.0


def test_cooldown_grows_with_overspend_and_is_capped() -> None:
    small = cooldown_seconds(spent=5.1, budget=10, elapsed=3600, wall_limit=7200, max_cooldown=1e9)
    large = cooldown_seconds(spent=6.0, budget=10, elapsed=3600, wall_limit=7200, max_cooldown=1e9)
    assert small == pytest.approx(0.01 * 7200)
    assert large == pytest.approx(0.1 * 7200)
    assert (
        cooldown_seconds(spent=6.0, budget=10, elapsed=3600, wall_limit=7200)
        == DEFAULT_MAX_COOLDOWN
    )
    assert cooldown_seconds(
        spent=5.1, budget=10, elapsed=3600, wall_limit=7200, base=10
    ) == pytest.approx(82)


def test_cooldown_never_runs_past_the_wall_limit() -> None:
    assert cooldown_seconds(spent=10, budget=10, elapsed=7190, wall_limit=7200) == pytest.approx(10)
    assert cooldown_seconds(spent=20, budget=10, elapsed=7300, wall_limit=7200) == 0.0


def test_cooldown_slack_lets_spend_run_ahead_a_little() -> None:
    # 5% of the budget spent at 1% of the time: inside a 10% slack, no cooldown
    assert cooldown_seconds(5, 100, 72, 7200, slack=0.1) == 0.0
    # 30% spent at 10% of the time: 10 points of slack, 10 points of lead left -> 720 s, capped
    assert cooldown_seconds(30, 100, 720, 7200, slack=0.1, max_cooldown=1000) == pytest.approx(720)
