"""The LP relaxation of the clearing problem and its Lagrangian dual: a certified bound.

Over candidate pairs (i item, p pool; x_ip the share of item i on p)::

    maximize    Σ_ip  a_ip · u_ip · x_ip          a_ip: GPUs item i needs on p
    subject to  Σ_p   x_ip ≤ 1                     for every item i
                Σ_i   a_ip · x_ip ≤ c_p            for every pool p   (dual y_p ≥ 0)
                x ≥ 0

Relaxing the capacity rows with rents y gives the dual function::

    L(y) = Σ_p c_p y_p + Σ_i max(0, max_p a_ip (u_ip − y_p))

For every y ≥ 0, L(y) ≥ the LP optimum ≥ the best integral welfare (whole gangs, whole
replicas, voucher budgets only remove solutions), so L at any rents the exchange finds
is an upper bound it can report without solving the LP. y_p is the scarcity rent of pool
p in yuan per GPU-hour.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["dual_value"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


def dual_value(
    y: F64, item: I64, pool: I64, u: F64, size: F64, cap: F64, starts: I64
) -> tuple[float, npt.NDArray[np.bool_]]:
    """L(y), and which pairs are their item's best response (ties all marked).

    Pairs must be grouped by item; ``starts`` holds each group's first index.
    """
    if len(item) == 0:
        return float(cap @ y), np.zeros(0, dtype=np.bool_)
    contrib = size * (u - y[pool])
    best = np.maximum.reduceat(contrib, starts)
    best_of_pair = np.repeat(best, np.diff(np.append(starts, len(contrib))))
    chosen = (contrib >= best_of_pair) & (best_of_pair > 0)
    return float(cap @ y + np.maximum(best, 0.0).sum()), chosen
