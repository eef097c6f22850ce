"""From a finished walk to a Decision: uniform pool prices, payments in fen, reasons.

Price of pool p = reserve r_p + scarcity rent, where the rent is

- 0 if p turned no work away for lack of room (capacity is not scarce there);
- else the price signal y_p, capped so that every buyer placed on p still values a GPU-hour
  at least at the price: rent ≤ min over p's placements of (value per GPU-hour − r_p).

So no buyer pays more than its (voucher-raised) bid and no seller gets less than its
reserve. For each placement the seller receives price × GPUs × hours, the platform
fee_rate on top of it; a voucher pays its coverage share of that total (never more than it
reserved), the buyer the rest: buyer + voucher = seller + fee, to the fen. A service's
bill over its pools is rounded once and kept within the value of its served tokens at the
bid, so rounding never lifts a buyer above its bid by more than the fee's half fen.

Replicas a service holds only because its owner asked for ``min_replicas`` (``required``)
are the exception: the owner wants them whatever the demand pays, so they are billed at
the pool's price (never below the seller's reserve) on top of that cap, and they do not
cap the pool's rent (a floor the owner chose must not lower other buyers' prices, nor the
seller's). The rule for a service's bill over the horizon h::

    seller = min( Σ_p price_p · GPUs_p · h,
                  value of the served tokens net of fee · h + Σ_p price_p · required GPUs_p · h )
"""

from __future__ import annotations

import math
from collections import defaultdict

from suanli.market.arrays import PoolArrays
from suanli.market.assign import Walk
from suanli.market.decision import (
    Decision,
    JobPlacement,
    Payment,
    PoolPrice,
    ReplicaPlacement,
    Route,
    ServiceOutcome,
    Unplaced,
)
from suanli.market.reasons import job_reasons, service_reasons
from suanli.market.snapshot import MarketSnapshot

__all__ = ["settle"]


def settle(
    policy: str,
    snapshot: MarketSnapshot,
    pools: PoolArrays,
    walk: Walk,
    rent_signal: list[float] | None,
    *,
    upper_bound: float | None = None,
    notes: tuple[str, ...] = (),
) -> Decision:
    st = walk.state
    fee = snapshot.rules.fee_rate
    horizon_h = snapshot.rules.service_horizon_h
    reserve = pools.reserve.tolist()
    n_pools = len(reserve)

    # Lowest value per GPU-hour among each pool's placements caps its rent.
    value_floor = [math.inf] * n_pools
    for j, p in enumerate(st.job_pool):
        if p >= 0:
            value_floor[p] = min(value_floor[p], st.job_value[j])
    svc_value: dict[tuple[int, int], float] = defaultdict(float)
    for i, p, x, _s in st.routes:
        k = walk.sc.items[i].service
        svc_value[(k, p)] += x * walk.sc.items[i].value_cny_per_rps_hour / (1.0 + fee)
    for (k, p), on in st.svc.items():
        if on.replicas > on.required:
            per_gpu = svc_value[(k, p)] / ((on.replicas - on.required) * on.gpus_per_replica)
            value_floor[p] = min(value_floor[p], per_gpu)

    prices: list[float] = []
    rents: list[float] = []
    for p in range(n_pools):
        rent = 0.0
        if rent_signal is not None and p in st.denied:
            rent = max(0.0, min(rent_signal[p], value_floor[p] - reserve[p]))
        rents.append(rent)
        prices.append(reserve[p] + rent)

    jobs_out: list[JobPlacement] = []
    draws: dict[str, int] = defaultdict(int)
    sold = [0] * n_pools
    welfare = 0.0
    for j, p in enumerate(st.job_pool):
        if p < 0:
            continue
        job = snapshot.jobs[j]
        n = job.gpus
        speed = float(pools.speed[p])
        duration_h = job.work_ref_gpu_hours / (n * speed)
        seller_fen = round(prices[p] * n * duration_h * 100)
        fee_fen = round(seller_fen * fee)
        total = seller_fen + fee_fen
        v = st.job_voucher[j]
        voucher_fen = 0
        voucher_id = None
        if v >= 0:
            prog = walk.book.programs[v]
            voucher_fen = min(math.floor(total * prog.coverage), walk.book.reserved_fen(v, f"j{j}"))
            voucher_id = prog.id
            draws[prog.id] += voucher_fen
        payment = Payment(
            buyer_fen=total - voucher_fen,
            voucher_fen=voucher_fen,
            seller_fen=seller_fen,
            fee_fen=fee_fen,
            voucher_id=voucher_id,
        )
        sold[p] += n
        welfare += n * st.job_u[j]
        why = (
            f"{pools.ids[p]}: price {prices[p]:.2f} yuan/GPU-h (reserve {reserve[p]:.2f}"
            f" + rent {rents[p]:.2f}) = {prices[p] * (1 + fee) / speed:.2f} per ref GPU-h"
            f" with fee, bid {job.bid_cny_per_ref_gpu_hour:.2f}"
            + (f", voucher {voucher_id} pays {voucher_fen / 100:.2f} yuan" if voucher_id else "")
        )
        jobs_out.append(
            JobPlacement(
                job_id=job.id,
                buyer=job.buyer,
                pool_id=pools.ids[p],  # type: ignore[arg-type]
                gpus=n,
                nodes=st.job_nodes[j],
                duration_h=duration_h,
                price_cny_per_gpu_hour=prices[p],
                payment=payment,
                surplus_cny_per_hour=n * st.job_u[j],
                why=why,
            )
        )

    services_out: list[ServiceOutcome] = []
    routes_by_service: dict[int, list[Route]] = defaultdict(list)
    for i, p, x, s in st.routes:
        item = walk.sc.items[i]
        routes_by_service[item.service].append(
            Route(
                service_id=snapshot.services[item.service].id,
                city=item.city,
                pool_id=pools.ids[p],  # type: ignore[arg-type]
                rps=x,
                rtt_ms=float(walk.sc.rtt_ms[s]),
                ttft_ms=float(walk.sc.ttft_ms[s]),
            )
        )
    unserved_by_service = service_reasons(snapshot, pools, walk)
    for k, svc in enumerate(snapshot.services):
        replicas = []
        seller_exact_fen = 0.0
        worth_net_fen = 0.0  # the served tokens at the bid, net of fee, over the horizon
        required_fen = 0.0  # the owner's required replicas at the pools' prices
        for (kk, p), on in sorted(st.svc.items()):
            if kk != k or on.replicas == 0:
                continue
            gpus = on.replicas * on.gpus_per_replica
            sold[p] += gpus
            seller_exact_fen += prices[p] * gpus * horizon_h * 100
            worth_net_fen += svc_value[(k, p)] * horizon_h * 100
            required_fen += prices[p] * on.required * on.gpus_per_replica * horizon_h * 100
            welfare += svc_value[(k, p)] - gpus * reserve[p]
            replicas.append(
                ReplicaPlacement(
                    service_id=svc.id,
                    pool_id=pools.ids[p],  # type: ignore[arg-type]
                    replicas=on.replicas,
                    gpus_per_replica=on.gpus_per_replica,
                    capacity_rps_per_replica=on.cap_rps,
                    required=on.required,
                )
            )
        # One rounding for the whole bill, never above what the buyer's bid is worth (rounding
        # pool by pool could add half a fen per pool on top of a price at the bid), plus the
        # required replicas at their price.
        seller_fen = min(round(seller_exact_fen), math.floor(worth_net_fen + required_fen + 1e-9))
        fee_fen = round(seller_fen * fee)
        routes = tuple(_merge_routes(routes_by_service[k]))
        services_out.append(
            ServiceOutcome(
                service_id=svc.id,
                buyer=svc.buyer,
                replicas=tuple(replicas),
                routes=routes,
                demand_rps=float(sum(svc.demand_rps.values())),
                served_rps=sum(r.rps for r in routes),
                payment=Payment(
                    buyer_fen=seller_fen + fee_fen,
                    voucher_fen=0,
                    seller_fen=seller_fen,
                    fee_fen=fee_fen,
                ),
                unserved=unserved_by_service.get(k, {}),
            )
        )

    unplaced = [
        Unplaced(
            item_id=snapshot.jobs[j].id,
            kind="job",
            reasons=job_reasons(j, snapshot, pools, walk, prices),
        )
        for j, p in enumerate(st.job_pool)
        if p < 0
    ]
    unplaced += [
        Unplaced(
            item_id=snapshot.services[k].id,
            kind="service",
            reasons=tuple(r for rs in cities.values() for r in rs),
        )
        for k, cities in unserved_by_service.items()
        if not any(on.replicas for (kk, _p), on in st.svc.items() if kk == k)
    ]
    price_rows = tuple(
        PoolPrice(
            pool_id=pools.ids[p],  # type: ignore[arg-type]
            price_cny_per_gpu_hour=prices[p],
            reserve_cny_per_gpu_hour=reserve[p],
            scarcity_rent_cny_per_gpu_hour=rents[p],
            gpus_sold=sold[p],
            free_gpus_after=st.free[p],
        )
        for p in range(n_pools)
    )
    return Decision(
        policy=policy,
        jobs=tuple(jobs_out),
        services=tuple(services_out),
        unplaced=tuple(unplaced),
        prices=price_rows,
        welfare_cny_per_hour=welfare,
        voucher_draws_fen=dict(draws),
        upper_bound_cny_per_hour=upper_bound,
        notes=notes,
    )


def _merge_routes(routes: list[Route]) -> list[Route]:
    merged: dict[tuple[str, str], Route] = {}
    for r in routes:
        key = (r.city, r.pool_id)
        if key in merged:
            m = merged[key]
            merged[key] = Route(m.service_id, m.city, m.pool_id, m.rps + r.rps, m.rtt_ms, m.ttft_ms)
        else:
            merged[key] = r
    return list(merged.values())
