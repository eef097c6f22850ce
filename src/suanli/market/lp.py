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
) -> tuple[np.ndarray, sp.csr_matrix, np.ndarray, int, int, np.ndarray]:
    """(c, A, b, n_items, n_job_cols, col_pair) for ``min c·x  s.t.  A x ≤ b, 0 ≤ x ≤ 1``.

    ``col_pair`` maps each column to the walk's pair index (jobs, then services).

    Columns: job pairs, then a voucher-free twin of every voucher-backed job pair (the
    job may also go there paying in full), then service pairs. Rows: items, pools, then
    voucher budgets and per-buyer caps. A pair's draw is counted at its least possible
    amount — coverage × reserve price with fee — so every integral answer that respects
    the budgets is feasible here and the LP stays an upper bound.
    """
    jc, sc = prep.jobs, prep.services
    fee = snapshot.rules.fee_rate
    reserve, speed = prep.pools.reserve, prep.pools.speed
    twin = np.flatnonzero(jc.voucher >= 0)
    bid = jc.bid[jc.item[twin]]
    u_twin = speed[jc.pool[twin]] * bid / (1.0 + fee) - reserve[jc.pool[twin]]
    twin = twin[u_twin > 0]
    u_twin = u_twin[u_twin > 0]
    job_item = np.concatenate([jc.item, jc.item[twin]])
    job_pool = np.concatenate([jc.pool, jc.pool[twin]])
    item = np.concatenate([job_item, sc.item + len(snapshot.jobs)])
    pool = np.concatenate([job_pool, sc.pool])
    size = np.concatenate([jc.n[job_item].astype(np.float64), sc.size])
    u = np.concatenate([jc.u, u_twin, sc.u])
    _, item_row = np.unique(item, return_inverse=True)
    n_items = int(item_row.max()) + 1 if len(item_row) else 0
    n_pools = len(prep.pools.ids)
    cols = np.arange(len(item))
    blocks = [
        sp.csr_matrix((np.ones(len(item)), (item_row, cols)), shape=(n_items, len(item))),
        sp.csr_matrix((size, (pool, cols)), shape=(n_pools, len(item))),
    ]
    rhs = [np.ones(n_items), prep.pools.free.astype(np.float64)]
    # Voucher rows over the voucher-backed job pairs (the first len(jc.item) columns).
    backed = np.flatnonzero(jc.voucher >= 0)
    if len(backed):
        p_b = jc.pool[backed]
        work = jc.work[jc.item[backed]]
        draw = jc.coverage[backed] * (1.0 + fee) * reserve[p_b] * work / speed[p_b]
        rows: dict[tuple[int, str], int] = {}
        row_of: list[list[int]] = []
        limits: list[float] = []
        programs = prep.book.programs
        for g, v in zip(backed.tolist(), jc.voucher[backed].tolist(), strict=True):
            prog = programs[v]
            keys = [(v, "")]
            if prog.per_buyer_cap_cny is not None:
                keys.append((v, snapshot.jobs[int(jc.item[g])].buyer))
            for key in keys:
                if key not in rows:
                    rows[key] = len(rows)
                    if key[1] == "":
                        limits.append(max(0.0, prog.budget_cny - prog.spent_cny))
                    else:
                        cap = prog.per_buyer_cap_cny or 0.0
                        limits.append(max(0.0, cap - prog.spent_by_buyer_cny.get(key[1], 0.0)))
            row_of.append([rows[k] for k in keys])
        r_idx = [r for rs in row_of for r in rs]
        c_idx = [int(g) for g, rs in zip(backed, row_of, strict=True) for _ in rs]
        vals = [float(d) for d, rs in zip(draw, row_of, strict=True) for _ in rs]
        blocks.append(sp.csr_matrix((vals, (r_idx, c_idx)), shape=(len(rows), len(item))))
        rhs.append(np.array(limits))
    a = sp.vstack(blocks).tocsr()
    n_job_pairs = len(jc.item)
    col_pair = np.concatenate(
        [np.arange(n_job_pairs), twin, n_job_pairs + np.arange(len(sc.item))]
    ).astype(np.int64)
    return -(size * u), a, np.concatenate(rhs), n_items, len(job_item), col_pair


class LpBoundPolicy:
    """The LP relaxation: welfare upper bound and dual prices; places nothing."""

    name = "lp-bound"

    def __init__(self, ctx: MarketContext) -> None:
        self.ctx = ctx

    def clear(self, snapshot: MarketSnapshot) -> Decision:
        prep = prepare(snapshot, self.ctx)
        c, a, b, n_items, _, _ = build_lp(snapshot, prep)
        n_pools = len(prep.pools.ids)
        if len(c) == 0:
            welfare, duals = 0.0, np.zeros(len(prep.pools.ids))
        else:
            res = linprog(c, A_ub=a, b_ub=b, bounds=(0, 1), method="highs")
            if res.status != 0:
                raise RuntimeError(f"HiGHS LP failed: {res.message}")
            welfare = -float(res.fun)
            duals = -np.asarray(res.ineqlin.marginals)[n_items : n_items + n_pools]
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
            notes=(
                "LP relaxation over the exchange's candidate pairs, voucher budgets and caps"
                " included: a bound, not a placement",
            ),
        )


class MilpPolicy:
    """HiGHS branch-and-bound with a time limit; the exact reference when it finishes."""

    name = "milp"

    def __init__(self, ctx: MarketContext, *, time_limit_s: float = 60.0) -> None:
        self.ctx = ctx
        self.time_limit_s = time_limit_s

    def clear(self, snapshot: MarketSnapshot) -> Decision:
        prep = prepare(snapshot, self.ctx)
        c, a, b, _, n_job_cols, col_pair = build_lp(snapshot, prep)
        walk = Walk(snapshot, prep.pools, prep.jobs, prep.services, prep.book)
        note = "no pairs"
        if len(c):
            integrality = np.zeros(len(c))
            integrality[:n_job_cols] = 1
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
            # Gangs chosen (binary), then service shares; the walk makes replicas integral
            # and respects node topology, in order of surplus per GPU-hour.
            gangs = np.flatnonzero(x[:n_job_cols] > 0.5)
            shares = n_job_cols + np.flatnonzero(x[n_job_cols:] > 1e-6)
            cols = np.concatenate([gangs, shares])
            sizes = np.concatenate([prep.jobs.n[prep.jobs.item], prep.services.size])
            per_gpu = -c[cols] / np.maximum(sizes[col_pair[cols]], 1e-12)
            walk.run(col_pair[cols[np.argsort(-per_gpu, kind="stable")]])
            gap = getattr(res, "mip_gap", None)
            note = f"HiGHS MILP: {res.message}" + (f", gap {gap:.2%}" if gap is not None else "")
        return settle(self.name, snapshot, prep.pools, walk, None, notes=(note,))
