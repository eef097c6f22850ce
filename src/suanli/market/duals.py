"""Price discovery: capacity prices from the Lagrangian dual of the LP relaxation.

The LP relaxation over candidate pairs (i item, p pool; x_ip the share of item i on p)::

    maximize    Σ_ip  a_ip · u_ip · x_ip          a_ip: GPUs item i needs on p
    subject to  Σ_p   x_ip ≤ 1                     for every item i
                Σ_i   a_ip · x_ip ≤ c_p            for every pool p   (dual y_p ≥ 0)
                x ≥ 0

Relaxing the capacity rows with prices y gives the dual function::

    L(y) = Σ_p c_p y_p + Σ_i max(0, max_p a_ip (u_ip − y_p))

L(y) ≥ LP optimum ≥ the best integral welfare for every y ≥ 0, so the smallest L seen is a
certified upper bound. Each item, facing prices y, demands its best pool; y moves by a
projected subgradient step toward clearing (excess demand raises a pool's price). y_p is
the scarcity rent of pool p in yuan per GPU-hour: the price signal the walk uses and the
starting point of the clearing price.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["DualResult", "discover_prices"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class DualResult:
    y: F64  # scarcity rent per pool, yuan per GPU-hour (the best-bound iterate)
    bound: float  # L(y): an upper bound on the LP relaxation's welfare per hour
    iterations: int


def dual_value(
    y: F64, item: I64, pool: I64, u: F64, size: F64, cap: F64, starts: I64
) -> tuple[float, npt.NDArray[np.bool_]]:
    """L(y) and which pairs are each item's best response (ties all marked)."""
    contrib = size * (u - y[pool])
    best = np.maximum.reduceat(contrib, starts)
    best_of_pair = np.repeat(best, np.diff(np.append(starts, len(contrib))))
    chosen = (contrib >= best_of_pair) & (best_of_pair > 0)
    return float(cap @ y + np.maximum(best, 0.0).sum()), chosen


def discover_prices(
    item: I64,
    pool: I64,
    u: F64,
    size: F64,
    cap: F64,
    *,
    iterations: int,
    scale: float,
) -> DualResult:
    """Projected subgradient on L(y) from y = 0; pairs must be grouped by item.

    ``scale`` (yuan per GPU-hour, e.g. the mean reserve) sets the first step size.
    """
    n_pools = len(cap)
    y = np.zeros(n_pools)
    if len(item) == 0:
        return DualResult(y=y, bound=0.0, iterations=0)
    starts = np.flatnonzero(np.r_[True, item[1:] != item[:-1]]).astype(np.int64)
    best_y = y.copy()
    best_bound = np.inf
    denom = np.maximum(cap, 1.0)
    for t in range(iterations):
        bound, chosen = dual_value(y, item, pool, u, size, cap, starts)
        if bound < best_bound:
            best_bound, best_y = bound, y.copy()
        demand = np.bincount(pool[chosen], weights=size[chosen], minlength=n_pools)
        excess = (demand - cap) / denom
        if not np.any(excess > 0) and not np.any((y > 0) & (excess < 0)):
            break  # every pool clears: y is optimal for the relaxation
        step = scale * 0.5 / np.sqrt(t + 1.0)
        y = np.maximum(0.0, y + step * excess)
    bound, _ = dual_value(y, item, pool, u, size, cap, starts)
    if bound < best_bound:
        best_bound, best_y = bound, y
    return DualResult(y=best_y, bound=best_bound, iterations=t + 1)
