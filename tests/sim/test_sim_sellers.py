"""Seller reserve policies: down while idle (to the power cost), up while sold out."""

from __future__ import annotations

import numpy as np
import pytest

from suanli.sim.scenario import SellerSpec
from suanli.sim.sellers import make_reserve_policy

SPEC = SellerSpec(idle_below=0.3, sold_out_above=0.9, down_per_hour=0.02, up_per_hour=0.02)


@pytest.mark.parametrize(
    ("reserve", "busy", "dt_h", "expected"),
    [
        (10.0, 0.1, 1.0, 9.8),  # idle: 10 × (1 − 0.02)^1
        (10.0, 0.1, 0.25, 10.0 * 0.98**0.25),  # a quarter hour: 9.9496
        (10.0, 0.95, 1.0, 10.2),  # sold out: 10 × 1.02
        (10.0, 0.5, 1.0, 10.0),  # between: hold
        (10.0, 0.3, 1.0, 10.0),  # exactly at idle_below is not idle
        (10.0, 0.9, 1.0, 10.2),  # exactly at sold_out_above is sold out
        (1.01, 0.0, 1.0, 1.0),  # 1.01 × 0.98 = 0.9898 < floor 1.0 → floor
        (19.9, 1.0, 1.0, 20.0),  # 19.9 × 1.02 = 20.298 > cap 2 × 10 → cap
        (10.0, float("nan"), 1.0, 10.0),  # a pool that is down: left alone
    ],
)
def test_adaptive_reserve(reserve: float, busy: float, dt_h: float, expected: float) -> None:
    floor, initial = np.array([1.0]), np.array([10.0])
    policy = make_reserve_policy(SPEC, floor, initial)
    out = policy.update(np.array([reserve]), np.array([busy]), dt_h)
    assert out[0] == pytest.approx(expected)


def test_a_week_idle_reaches_the_power_cost_and_stays_there() -> None:
    floor, initial = np.array([0.4]), np.array([5.0])
    policy = make_reserve_policy(SPEC, floor, initial)
    r = initial.copy()
    for _ in range(24 * 7 * 4):
        r = policy.update(r, np.array([0.0]), 0.25)
    # 5 × 0.98^168 = 0.167 < 0.4: the floor binds
    assert r[0] == pytest.approx(0.4)


def test_fixed_sellers_never_move() -> None:
    policy = make_reserve_policy(SellerSpec(policy="fixed"), np.array([1.0]), np.array([5.0]))
    assert policy.update(np.array([5.0]), np.array([0.0]), 1.0)[0] == 5.0
