"""Integral replica plans for services at given GPU prices: a small facility location each.

Service k serves cities c with demand d_c (requests/s). On pool p a replica takes g_p GPUs
and serves cap_p requests/s; a GPU-hour there costs π_p (reserve + rent). A request/s-hour
served is worth v (the bid net of fee). Over the candidate pairs (which already meet the
latency SLO), choose replicas m_p ∈ ℕ and routes x_cp ≥ 0::

    maximize    v · Σ_cp x_cp  −  Σ_p m_p g_p π_p
    subject to  Σ_p x_cp ≤ d_c             (a city's demand, at most once)
                Σ_c x_cp ≤ m_p · cap_p      (routes fit the replicas)
                m_p g_p ≤ room_p           (GPUs still free on p)

Two plans per service, the better kept:

- A follows the auction: each city stays on the pool the auction gave it, replicas are
  rounded per pool (up, or down where the last replica is not worth its GPUs);
- B is greedy ADD: open pools one at a time; each city is served by the open pool with
  the lowest cost per request/s-hour (g_p π_p / cap_p); the pool added is the one that
  raises the plan's value most, rounding included; stop when none does.

A keeps ties within ``tol`` per GPU: at the rents the auction found, A's pools are as cheap
as B's, and the auction fitted them around everyone else's demand; B wins where rounding
A's scattered cities would waste replicas.

The plan kept then meets the owner's bounds (``replica_bounds``): replicas beyond
``max_replicas`` are dropped, least valuable first, and replicas up to ``min_replicas``
are added on the cheapest pools meeting the SLO of the largest city; cities left unserved
are routed into those where they may go.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from suanli.market.replica_bounds import add_required, drop_extra
from suanli.market.service_candidates import ServiceCandidates

__all__ = ["ReplicaBlock", "plan_services"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

_EPS_RPS = 1e-9


@dataclass(frozen=True, slots=True)
class ReplicaBlock:
    """Replicas of one service on one pool and the demand routed to them; ``required``
    of the replicas are there only for the owner's ``min_replicas``."""

    service: int
    pool: int
    replicas: int
    routes: tuple[tuple[int, float], ...]  # (service pair index, requests/s)
    pair: int = -1  # a service pair on this pool, to place the replicas by
    required: int = 0


@dataclass(frozen=True)
class _Service:
    """One service's candidate pairs in local indices (cities × pools)."""

    items: I64  # local city → global service item
    city: I64  # local city of each pair
    pool_local: I64  # local pool of each pair
    pools: I64  # local pool → global pool
    demand: F64  # per local city
    value: float  # v, yuan per request/s-hour net of fee
    gpus: F64  # g per local pool
    cap_rps: F64  # per local pool
    pair_at: I64  # (city, pool) → global service pair index, −1 where not a candidate


def plan_services(
    sc: ServiceCandidates,
    price: F64,
    room_gpus: F64,
    auction_pair: I64,
    *,
    fee_rate: float,
    tol: float,
) -> list[ReplicaBlock]:
    """Plans for every service, in service order; ``room_gpus`` is reduced in place.

    ``price`` is the GPU-hour price per pool; ``auction_pair`` holds, per service item, the
    pair the auction gave it (−1 for none).
    """
    blocks: list[ReplicaBlock] = []
    if len(sc.item) == 0:
        return blocks
    service_of_item = np.array([it.service for it in sc.items], dtype=np.int64)
    k_of_pair = service_of_item[sc.item]
    bounds = np.flatnonzero(np.r_[True, k_of_pair[1:] != k_of_pair[:-1], True])
    in_auction = np.zeros(len(sc.item), dtype=np.bool_)
    in_auction[auction_pair[auction_pair >= 0]] = True
    for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        svc = _local(sc, lo, hi, fee_rate)
        k = int(k_of_pair[lo])
        pr = price[svc.pools]
        most = np.floor(room_gpus[svc.pools] / svc.gpus)
        arg_a = np.full(len(svc.demand), -1, dtype=np.int64)
        mine = in_auction[lo:hi]
        arg_a[svc.city[mine]] = svc.pool_local[mine]
        m_a = _replicas(_loads(svc, arg_a), svc, pr, most)
        arg_b = _greedy_add(svc, pr, most)
        m_b = _replicas(_loads(svc, arg_b), svc, pr, most)
        value_a, _ = _routes(svc, m_a, arg_a, pr)
        value_b, _ = _routes(svc, m_b, arg_b, pr)
        gpus_a = float(m_a @ svc.gpus)
        gpus_b = float(m_b @ svc.gpus)
        if value_a >= value_b - tol * max(gpus_a, gpus_b):
            m, arg = m_a, arg_a
        else:
            m, arg = m_b, arg_b
        m, required, arg = _bounded(sc, k, svc, m, arg, pr, most)
        _, routes = _routes(svc, m, arg, pr)
        room_gpus[svc.pools] -= m * svc.gpus
        for q in np.flatnonzero(m > 0).tolist():
            on_q = routes.get(q, [])
            blocks.append(
                ReplicaBlock(
                    service=k,
                    pool=int(svc.pools[q]),
                    replicas=int(m[q]),
                    routes=tuple(on_q),
                    pair=on_q[0][0] if on_q else int(svc.pair_at[:, q].max()),
                    required=int(required[q]),
                )
            )
    return blocks


def _bounded(
    sc: ServiceCandidates, k: int, svc: _Service, m: I64, arg: I64, pr: F64, most: F64
) -> tuple[I64, I64, I64]:
    """The plan within the owner's bounds: replicas, how many are required only by
    ``min_replicas`` (per local pool), and the city → pool assignment."""
    b = sc.bounds_of(k)
    gpu_cost = svc.gpus * pr
    m = drop_extra(m, _loads(svc, arg), svc.cap_rps, gpu_cost, svc.value, b.max_replicas)
    anchor = np.flatnonzero(svc.items == b.anchor_item)
    need = b.min_replicas - int(m.sum())
    if need <= 0 or len(anchor) == 0:
        return m, np.zeros(len(m), dtype=np.int64), arg
    allowed = svc.pair_at[int(anchor[0])] >= 0
    m, required = add_required(m, need, allowed, most, gpu_cost, svc.cap_rps)
    arg = arg.copy()
    added = np.flatnonzero(required > 0)
    for q in added[np.argsort(gpu_cost[added] / svc.cap_rps[added], kind="stable")].tolist():
        # Unserved cities that may use the new replicas go there (cheapest first).
        go = (arg < 0) & (svc.pair_at[:, q] >= 0)
        arg[go] = q
    return m, required, arg


def _local(sc: ServiceCandidates, lo: int, hi: int, fee_rate: float) -> _Service:
    city_u, city = np.unique(sc.item[lo:hi], return_inverse=True)
    pools, pool_local = np.unique(sc.pool[lo:hi], return_inverse=True)
    gpus = np.zeros(len(pools))
    cap_rps = np.zeros(len(pools))
    gpus[pool_local] = sc.gpus_per_replica[lo:hi]
    cap_rps[pool_local] = sc.cap_rps[lo:hi]
    first = sc.items[int(city_u[0])]
    pair_at = np.full((len(city_u), len(pools)), -1, dtype=np.int64)
    pair_at[city, pool_local] = np.arange(lo, hi)
    return _Service(
        items=city_u.astype(np.int64),
        city=city.astype(np.int64),
        pool_local=pool_local.astype(np.int64),
        pools=pools.astype(np.int64),
        demand=np.array([sc.items[int(i)].demand_rps for i in city_u]),
        value=first.value_cny_per_rps_hour / (1.0 + fee_rate),
        gpus=gpus,
        cap_rps=cap_rps,
        pair_at=pair_at,
    )


def _loads(svc: _Service, arg: I64) -> F64:
    on = arg >= 0
    return np.bincount(arg[on], weights=svc.demand[on], minlength=len(svc.pools)).astype(np.float64)


def _round_value(load: F64, cap: F64, gpu_cost: F64, v: float, most: F64) -> tuple[F64, F64]:
    """Value of serving ``load`` with whole replicas (at most ``most``), and that count."""
    down = np.minimum(np.floor(load / cap + 1e-9), most)
    up = np.minimum(np.ceil(load / cap - 1e-9), most)
    val_down = v * np.minimum(load, down * cap) - down * gpu_cost
    val_up = v * np.minimum(load, up * cap) - up * gpu_cost
    return np.maximum(np.maximum(val_down, val_up), 0.0), np.where(val_up >= val_down, up, down)


def _replicas(load: F64, svc: _Service, pr: F64, most: F64) -> I64:
    val, m = _round_value(load, svc.cap_rps, svc.gpus * pr, svc.value, most)
    return np.where(val > 0, m, 0).astype(np.int64)


def _greedy_add(svc: _Service, pr: F64, most: F64) -> I64:
    """Plan B's city → local pool assignment (−1: unserved)."""
    n_city, n_pool = len(svc.demand), len(svc.pools)
    gpu_cost = svc.gpus * pr
    useful = (svc.value * svc.cap_rps > gpu_cost) & (most > 0)
    cost = np.full((n_city, n_pool), np.inf)
    cost[svc.city, svc.pool_local] = (gpu_cost / svc.cap_rps)[svc.pool_local]
    cost[:, ~useful] = np.inf
    current = np.full(n_city, np.inf)
    arg = np.full(n_city, -1, dtype=np.int64)
    is_open = np.zeros(n_pool, dtype=np.bool_)
    total = 0.0
    while True:
        moves = cost < current[:, None]  # city c would move to pool q if q opened
        moved = svc.demand[:, None] * moves
        trial, _ = _round_value(moved.sum(axis=0), svc.cap_rps, gpu_cost, svc.value, most)
        opened = np.flatnonzero(is_open)
        if len(opened):
            member = (arg[:, None] == opened[None, :]).astype(np.float64)
            left = (svc.demand @ member)[:, None] - member.T @ moved
            kept, _ = _round_value(
                left,
                svc.cap_rps[opened][:, None],
                gpu_cost[opened][:, None],
                svc.value,
                most[opened][:, None],
            )
            trial = trial + kept.sum(axis=0)
        trial[is_open | ~useful] = -np.inf
        q = int(np.argmax(trial))
        if not trial[q] > total + 1e-9:
            return arg
        total = float(trial[q])
        go = moves[:, q]
        current[go] = cost[go, q]
        arg[go] = q
        is_open[q] = True


def _routes(
    svc: _Service, m: I64, arg: I64, pr: F64
) -> tuple[float, dict[int, list[tuple[int, float]]]]:
    """Route each city to its pool, largest first, up to the replicas' capacity."""
    room = m * svc.cap_rps
    routes: dict[int, list[tuple[int, float]]] = {}
    served = 0.0
    for c in np.argsort(-svc.demand, kind="stable").tolist():
        q = int(arg[c])
        if q < 0 or m[q] == 0:
            continue
        x = min(float(svc.demand[c]), float(room[q]))
        if x > _EPS_RPS:
            room[q] -= x
            served += x
            routes.setdefault(q, []).append((int(svc.pair_at[c, q]), x))
    return svc.value * served - float(m @ (svc.gpus * pr)), routes
