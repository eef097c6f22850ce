"""How sellers move their reserve prices between rounds.

A policy sees, per pool, the reserve it posted and the share of the pool that was busy
after the round, and returns next round's reserves. Two ship:

- ``fixed``: sellers never change their posted reserve.
- ``adaptive`` (default): while a pool stays idle (busy share < ``idle_below``) its seller
  lowers the reserve by ``down_per_hour`` per hour, never below the pool's power cost per
  GPU-hour (TDP_kW × PUE × power price: below it, every sold hour loses money); while it
  sells out (busy share ≥ ``sold_out_above``) the seller raises it by ``up_per_hour`` per
  hour, never above ``max_factor`` × the reserve it started with. In between it holds.

Pools that are down are left alone (their busy share is NaN).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import numpy.typing as npt

from suanli.sim.scenario import SellerSpec

__all__ = ["AdaptiveReserve", "FixedReserve", "ReservePolicy", "make_reserve_policy"]

F64 = npt.NDArray[np.float64]


class ReservePolicy(Protocol):
    name: str

    def update(self, reserve: F64, busy_share: F64, dt_h: float) -> F64:
        """Next reserves (yuan per GPU-hour) after ``dt_h`` hours at ``busy_share``."""
        ...


class FixedReserve:
    name = "fixed"

    def update(self, reserve: F64, busy_share: F64, dt_h: float) -> F64:
        return reserve


class AdaptiveReserve:
    """Lower while idle (down to the power cost), raise while sold out (up to a cap)."""

    name = "adaptive"

    def __init__(self, spec: SellerSpec, floor: F64, initial: F64) -> None:
        self.spec = spec
        self.floor = floor
        self.cap = np.maximum(initial * spec.max_factor, floor)

    def update(self, reserve: F64, busy_share: F64, dt_h: float) -> F64:
        s = self.spec
        up = np.nan_to_num(busy_share, nan=-1.0) >= s.sold_out_above
        down = np.nan_to_num(busy_share, nan=2.0) < s.idle_below
        out = reserve.copy()
        out[down] = np.maximum(self.floor[down], reserve[down] * (1.0 - s.down_per_hour) ** dt_h)
        out[up] = np.minimum(self.cap[up], reserve[up] * (1.0 + s.up_per_hour) ** dt_h)
        return out


def make_reserve_policy(spec: SellerSpec, floor: F64, initial: F64) -> ReservePolicy:
    """The policy the scenario names; ``floor`` is each pool's power cost per GPU-hour."""
    if spec.policy == "fixed":
        return FixedReserve()
    return AdaptiveReserve(spec, floor, initial)
