"""HiGHS references on the exchange's candidate pairs: the LP bound and the exact MILP.

Variables x_ip ∈ [0, 1] for each candidate pair (item i, pool p), a_ip the GPUs item i
needs on p, u_ip its surplus per GPU-hour::

    maximize    Σ a_ip u_ip x_ip
    subject to  Σ_p x_ip ≤ 1           (each item at most once)
                Σ_i a_ip x_ip ≤ c_p    (pool capacity; its dual is the scarcity rent)

``lp-bound`` solves the relaxation (an upper bound on welfare, not a placement; prices are
reserve + capacity duals). ``milp`` makes job variables binary (gangs are all-or-nothing;
service demand stays divisible, replicas are rounded when placed) and stops at a time
limit; its placements go through the same walk so node topology is respected.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.optimize import Bounds, LinearConstraint, linprog, milp

from suanli.market.assign import Walk
from suanli.market.context import MarketContext
from suanli.market.decision import Decision, PoolPrice
from suanli.market.policies import Prepared, prepare
from suanli.market.settle import settle
from suanli.market.snapshot import MarketSnapshot

__all__ = ["LpBoundPolicy", "MilpPolicy", "build_lp"]


def build_lp(
    snapshot: MarketSnapshot, prep: Prepared
) -> tuple[np.ndarray, sp.csr_matrix, np.ndarray, int]:
    """(c, A, b, n_items) for ``min c·x  s.t.  A x ≤ b, 0 ≤ x ≤ 1``."""
    jc, sc = prep.jobs, prep.services
    item = np.concatenate([jc.item, sc.item + len(snapshot.jobs)])
    pool = np.concatenate([jc.pool, sc.pool])
    size = np.concatenate([jc.n[jc.item].astype(np.float64), sc.size])
    u = np.concatenate([jc.u, sc.u])
    _, item_row = np.unique(item, return_inverse=True)
    n_items = int(item_row.max()) + 1 if len(item_row) else 0
    n_pools = len(prep.pools.ids)
    cols = np.arange(len(item))
    a_items = sp.csr_matrix((np.ones(len(item)), (item_row, cols)), shape=(n_items, len(item)))
    a_pools = sp.csr_matrix((size, (pool, cols)), shape=(n_pools, len(item)))
    a = sp.vstack([a_items, a_pools]).tocsr()
    b = np.concatenate([np.ones(n_items), prep.pools.free.astype(np.float64)])
    return -(size * u), a, b, n_items


class LpBoundPolicy:
    """The LP relaxation: welfare upper bound and dual prices; places nothing."""

    name = "lp-bound"

    def __init__(self, ctx: MarketContext) -> None:
        self.ctx = ctx

    def clear(self, snapshot: MarketSnapshot) -> Decision:
        prep = prepare(snapshot, self.ctx)
        c, a, b, n_items = build_lp(snapshot, prep)
        if len(c) == 0:
            welfare, duals = 0.0, np.zeros(len(prep.pools.ids))
        else:
            res = linprog(c, A_ub=a, b_ub=b, bounds=(0, 1), method="highs")
            if res.status != 0:
                raise RuntimeError(f"HiGHS LP failed: {res.message}")
            welfare = -float(res.fun)
            duals = -np.asarray(res.ineqlin.marginals)[n_items:]
        reserve = prep.pools.reserve
        prices = tuple(
            PoolPrice(
                pool_id=pid,  # type: ignore[arg-type]
                price_cny_per_gpu_hour=float(reserve[p] + duals[p]),
                reserve_cny_per_gpu_hour=float(reserve[p]),
                scarcity_rent_cny_per_gpu_hour=float(duals[p]),
                gpus_sold=0,
                free_gpus_after=int(prep.pools.free[p]),
            )
            for p, pid in enumerate(prep.pools.ids)
        )
        return Decision(
            policy=self.name,
            jobs=(),
            services=(),
            unplaced=(),
            prices=prices,
            welfare_cny_per_hour=welfare,
            upper_bound_cny_per_hour=welfare,
            notes=("LP relaxation over the exchange's candidate pairs: a bound, not a placement",),
        )


class MilpPolicy:
    """HiGHS branch-and-bound with a time limit; the exact reference when it finishes."""

    name = "milp"

    def __init__(self, ctx: MarketContext, *, time_limit_s: float = 60.0) -> None:
        self.ctx = ctx
        self.time_limit_s = time_limit_s

    def clear(self, snapshot: MarketSnapshot) -> Decision:
        prep = prepare(snapshot, self.ctx)
        c, a, b, _ = build_lp(snapshot, prep)
        n_job_pairs = len(prep.jobs.item)
        walk = Walk(snapshot, prep.pools, prep.jobs, prep.services, prep.book)
        note = "no pairs"
        if len(c):
            integrality = np.zeros(len(c))
            integrality[:n_job_pairs] = 1
            res = milp(
                c,
                constraints=LinearConstraint(a, -np.inf, b),
                integrality=integrality,
                bounds=Bounds(0, 1),
                options={"time_limit": self.time_limit_s, "disp": False},
            )
            if res.x is None:
                note = f"HiGHS MILP found no solution in {self.time_limit_s:g} s ({res.message})"
                return settle(self.name, snapshot, prep.pools, walk, None, notes=(note,))
            x = np.asarray(res.x)
            chosen = np.flatnonzero(x > 0.5 if True else x)
            chosen_jobs = chosen[chosen < n_job_pairs]
            # Service shares: route them in order of surplus; replicas become integral.
            svc = np.flatnonzero(x[n_job_pairs:] > 1e-6) + n_job_pairs
            u = -c / np.maximum(
                np.concatenate([prep.jobs.n[prep.jobs.item], prep.services.size]), 1e-12
            )
            order = np.concatenate([chosen_jobs, svc])
            walk.run(order[np.argsort(-u[order], kind="stable")])
            gap = getattr(res, "mip_gap", None)
            note = f"HiGHS MILP: {res.message}" + (f", gap {gap:.2%}" if gap is not None else "")
        return settle(self.name, snapshot, prep.pools, walk, None, notes=(note,))
