"""The exchange policy: auction rents, integral plans around them, the walk, settlement.

The problem. Items are jobs j (a gang of n_j GPUs, all in one pool) and services k with
demand d_c per city c; candidate pairs (item, pool p) passed every hard filter. u is the
surplus per GPU-hour: value net of fee (voucher coverage included) less reserve r_p; a
service's request/s-hour is worth v_k; a replica of k on p takes g_kp GPUs and serves
cap_kp requests/s. Variables: x_jp ∈ {0, 1}; replicas m_kp ∈ ℕ; routes x_cp ≥ 0::

    maximize    Σ_jp n_j u_jp x_jp  +  Σ_k (v_k Σ_cp x_cp − Σ_p m_kp g_kp r_p)
    subject to  Σ_p x_jp ≤ 1                        each job at most once
                Σ_p x_cp ≤ d_c                      each city's demand at most once
                Σ_c x_cp ≤ m_kp cap_kp              routes fit the replicas
                Σ_j n_j x_jp + Σ_k m_kp g_kp ≤ c_p    pool capacity (its rent y_p)
                Σ R_jp x_jp (voucher users) ≤ a program's budget, and each buyer's cap
    plus node topology (gangs and replicas on whole nodes, see ``topology``).

Steps:

1. an ``auction`` over all items, a city's service demand as one item of fractional
   size, gives rents y¹ and who would go where;
2. ``voucher_rationing`` prices the voucher budgets (λ per yuan reserved) from that;
3. ``service_plan`` turns each service into whole replicas at prices r + y¹, within
   the owners' replica bounds;
4. a second auction places the jobs, at their λ-priced values, in the GPUs left;
   rents y are the lowest that clear it (``lowest_clearing_rent``);
5. the walk replays it with node topology and voucher reservations (at most the price
   reserve + y can charge): replicas first, the auction's jobs (voucher users by gain
   per yuan reserved), then every pair by surplus net of rent, then a fill pass by
   surplus at reserve for what is left;
6. ``settle`` prices each pool at reserve + rent (capped by bids) and writes payments.

The upper bound reported is the least of the dual function L (see ``duals``) at the
rents found: certified, and no LP solved.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from suanli.market.assign import Walk
from suanli.market.auction import AuctionResult, lowest_clearing_rent, run_auction
from suanli.market.context import MarketContext
from suanli.market.decision import Decision
from suanli.market.duals import dual_value
from suanli.market.policies import prepare
from suanli.market.service_plan import plan_services
from suanli.market.settle import settle
from suanli.market.snapshot import MarketSnapshot
from suanli.market.voucher_rationing import (
    VoucherFacts,
    job_values,
    ration,
    reservations_cny,
    voucher_facts,
)

__all__ = ["ExchangePolicy"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

# Bid increment and its ceiling as shares of the mean reserve (about 0.008 and 1.6 yuan
# per GPU-hour at today's reserves). A holder is within its increment per GPU of its best
# pool, so ε bounds the auction's loss per GPU; the ceiling only speeds up losers.
_EPS_SHARE = 0.001
_EPS_MAX_SHARE = 0.2


class ExchangePolicy:
    """The market: auction rents, integral plans, a walk, uniform prices."""

    name = "exchange"

    def __init__(self, ctx: MarketContext) -> None:
        self.ctx = ctx

    def clear(self, snapshot: MarketSnapshot) -> Decision:
        prep = prepare(snapshot, self.ctx)
        jc, sc, pools = prep.jobs, prep.services, prep.pools
        n_jobs = len(snapshot.jobs)
        nj = len(jc.item)
        item = np.concatenate([jc.item, sc.item + n_jobs])
        pool = np.concatenate([jc.pool, sc.pool])
        size = np.concatenate([jc.n[jc.item].astype(np.float64), sc.size])
        u = np.concatenate([jc.u, sc.u])
        cap = pools.free.astype(np.float64)
        scale = float(np.mean(pools.reserve)) if len(pools.reserve) else 1.0
        eps, eps_max = _EPS_SHARE * scale, _EPS_MAX_SHARE * scale

        n_items = n_jobs + len(sc.items)
        facts = voucher_facts(snapshot, pools, jc, prep.book.programs)
        # First pass: vouchers free, except where one placement alone exceeds what is left.
        at_reserve = reservations_cny(facts, pools.reserve, jc.pool)
        none_held = np.zeros(0, dtype=np.int64)
        lam = ration(facts, none_held, at_reserve, facts.with_voucher)
        first_values = np.concatenate([job_values(facts, lam, at_reserve), sc.size * sc.u])
        first = _auction(item, n_items, pool, size, first_values, cap, eps, eps_max)
        low = lowest_clearing_rent(item, pool, size, first_values, first.held_pair, first.rent)
        reserve_cny = reservations_cny(facts, pools.reserve + low, jc.pool)
        held1 = first.held_pair[(first.held_pair >= 0) & (first.held_pair < nj)]
        lam = np.maximum(lam, ration(facts, held1, reserve_cny, first_values))

        room = cap.copy()
        svc_held = first.held_pair[n_jobs:]
        blocks = plan_services(
            sc,
            pools.reserve + first.rent,
            room,
            np.where(svc_held >= 0, svc_held - nj, -1),
            fee_rate=snapshot.rules.fee_rate,
            tol=eps,
        )

        values = job_values(facts, lam, reserve_cny)
        second = _auction(jc.item, n_jobs, jc.pool, size[:nj], values, room, eps, eps_max)
        low2 = lowest_clearing_rent(
            jc.item, jc.pool, size[:nj], values, second.held_pair, second.rent
        )
        # Pools the services filled saw no second auction: they keep the first rent.
        rent = np.where(room >= 1.0, low2, np.maximum(low, low2))
        reserve_cny = reservations_cny(facts, pools.reserve + rent, jc.pool)

        walk = Walk(snapshot, pools, jc, sc, prep.book, rent_cap=rent.tolist())
        for b in blocks:
            walk.add_replicas(b.pair, b.replicas, required=b.required)
            for s, rps in b.routes:
                walk.route_spare(s, rps)
        rent_list = rent.tolist()
        walk.run(_auction_order(second, facts, values, reserve_cny), rent_list)
        reduced = u - rent[pool]
        ahead = _still_open(walk, np.flatnonzero(reduced >= 0))
        walk.run(ahead[np.argsort(-reduced[ahead], kind="stable")], rent_list)
        behind = _still_open(walk, np.flatnonzero(reduced < 0))
        walk.run(behind[np.argsort(-u[behind], kind="stable")])

        bound = _upper_bound(item, pool, u, size, cap, (first.rent, low, rent))
        return settle(
            self.name,
            snapshot,
            pools,
            walk,
            rent_list,
            upper_bound=bound,
            notes=(f"auction: {first.rounds} + {second.rounds} rounds",),
        )


def _auction(
    item: I64,
    n_items: int,
    pool: I64,
    size: F64,
    value: F64,
    cap: F64,
    eps: float,
    eps_max: float,
) -> AuctionResult:
    """Auction over the pairs that fit their pool and are worth something; ``held_pair``
    indexes the given pair arrays, one entry per item 0..n_items − 1."""
    keep = np.flatnonzero((size <= cap[pool] + 1e-9) & (value > 0))
    counts = np.bincount(item[keep], minlength=n_items)
    starts = np.zeros(n_items + 1, dtype=np.int64)
    np.cumsum(counts, out=starts[1:])
    res = run_auction(starts, pool[keep], size[keep], value[keep], cap, eps=eps, eps_max=eps_max)
    held = np.full(n_items, -1, dtype=np.int64)
    on = res.held_pair >= 0
    held[on] = keep[res.held_pair[on]]
    return AuctionResult(rent=res.rent, held_pair=held, rounds=res.rounds)


def _auction_order(res: AuctionResult, facts: VoucherFacts, values: F64, reserve_cny: F64) -> I64:
    """The second auction's job pairs: voucher users by gain per yuan reserved, then the rest."""
    held = res.held_pair[res.held_pair >= 0]
    leans = (facts.program[held] >= 0) & (values[held] > facts.without[held] + 1e-12)
    gain = (facts.with_voucher[held] - facts.without[held]) / np.maximum(reserve_cny[held], 1e-12)
    users = held[leans][np.argsort(-gain[leans], kind="stable")]
    return np.concatenate([users, held[~leans]])


def _still_open(walk: Walk, pairs: I64) -> I64:
    """Drop pairs the walk would skip: placed jobs, full pools, fully served cities.

    A pool too full for an unplaced job's gang is marked as having turned work away, as
    the walk would have marked it on reaching the pair.
    """
    st = walk.state
    nj = walk.n_job_pairs
    jc, sc = walk.jc, walk.sc
    free = np.asarray(st.free, dtype=np.int64)
    jobs = pairs[pairs < nj]
    unplaced = np.asarray(st.job_pool, dtype=np.int64)[jc.item[jobs]] < 0
    room = free[jc.pool[jobs]] >= jc.n[jc.item[jobs]]
    st.denied.update(np.unique(jc.pool[jobs[unplaced & ~room]]).tolist())
    open_job = unplaced & room
    svc = pairs[pairs >= nj] - nj
    open_svc = np.asarray(st.item_rem, dtype=np.float64)[sc.item[svc]] > 1e-9
    return np.concatenate([jobs[open_job], svc[open_svc] + nj])


def _upper_bound(
    item: I64, pool: I64, u: F64, size: F64, cap: F64, rents: tuple[F64, ...]
) -> float | None:
    if len(item) == 0:
        return 0.0
    starts = np.flatnonzero(np.r_[True, item[1:] != item[:-1]]).astype(np.int64)
    return min(dual_value(y, item, pool, u, size, cap, starts)[0] for y in rents)
