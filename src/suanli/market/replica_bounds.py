"""Owners' replica bounds on a service's plan: at most ``max_replicas``, at least
``min_replicas``.

Both act on one service's plan in ``service_plan``'s local terms: per candidate pool q,
replicas m_q of g_q GPUs at price π_q serving cap_q requests/s, the load routed there,
and v the value of a request/s-hour net of fee.

- Too many: drop one replica at a time where it loses the least,
  v·(min(load, m·cap) − min(load, (m − 1)·cap)) − g·π (saved cost counts for it). A
  pool's next replica to drop never loses less than the one before, so dropping greedily
  keeps the most valuable plan with that many replicas.
- Too few: the owner asked for them (a warm replica for the first request of the day, a
  floor for failover), so they are added where demand does not pay for them: on the pools
  that meet the SLO for the service's largest city, cheapest replica first (g·π, then the
  larger capacity), as long as GPUs are free there. They are *required* replicas, paid at
  the pool's price like any other (see ``settle``).

Pure functions of arrays; no state.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["add_required", "drop_extra"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
B = npt.NDArray[np.bool_]


def drop_extra(m: I64, load: F64, cap_rps: F64, gpu_cost: F64, v: float, most: int | None) -> I64:
    """``m`` with at most ``most`` replicas in all, the least valuable ones dropped."""
    m = m.copy()
    if most is None:
        return m
    while int(m.sum()) > most:
        served = np.minimum(load, m * cap_rps)
        served_less = np.minimum(load, np.maximum(m - 1, 0) * cap_rps)
        loss = np.where(m > 0, v * (served - served_less) - gpu_cost, np.inf)
        m[int(np.argmin(loss))] -= 1
    return m


def add_required(
    m: I64, need: int, allowed: B, most: F64, gpu_cost: F64, cap_rps: F64
) -> tuple[I64, I64]:
    """Replicas after adding up to ``need`` on the ``allowed`` pools (at most ``most`` on
    each), cheapest replica first; and how many were added per pool."""
    added = np.zeros(len(m), dtype=np.int64)
    if need <= 0:
        return m.copy(), added
    order = np.lexsort((np.arange(len(m)), -cap_rps, gpu_cost))
    for q in order.tolist():
        if need <= 0:
            break
        if not allowed[q]:
            continue
        take = int(min(need, max(0.0, float(most[q]) - float(m[q]))))
        added[q] = take
        need -= take
    return m + added, added
