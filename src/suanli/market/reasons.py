"""Reasons for work left unplaced, written for the buyer and kept machine-readable.

Each filter stage that removed pools contributes one reason with the number of pools it
removed; the message names the numbers that decided (GB needed, hours vs deadline, bid vs
cheapest cost, RTT + prefill vs TTFT).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from suanli.market.decision import Reason, ReasonCode
from suanli.market.job_candidates import FILTER_STAGES, HARD_STAGES
from suanli.market.service_candidates import SERVICE_HARD_STAGES, SERVICE_STAGES

if TYPE_CHECKING:
    from suanli.market.arrays import PoolArrays
    from suanli.market.assign import Walk
    from suanli.market.snapshot import MarketSnapshot

__all__ = ["job_reasons", "service_reasons"]

_EPS_RPS = 1e-6


def _private(pools: int) -> Reason:
    return _r(ReasonCode.PRIVATE, "the site takes work only from its own tenant", pools)


def job_reasons(
    j: int, snapshot: MarketSnapshot, pools: PoolArrays, walk: Walk, prices: list[float]
) -> tuple[Reason, ...]:
    jc = walk.jc
    job = snapshot.jobs[j]
    fails = dict(zip(FILTER_STAGES, jc.stage_fail[j].tolist(), strict=True))
    n = job.gpus
    out: list[Reason] = []
    if not pools.ids:
        return (Reason(ReasonCode.NO_POOLS, "the market has no pools this round"),)
    if fails["gpu-not-allowed"]:
        allowed = ", ".join(sorted(job.allowed_gpus or ()))
        out.append(
            _r(ReasonCode.MODEL_NOT_ALLOWED, f"only {allowed} allowed", fails["gpu-not-allowed"])
        )
    if fails["memory"]:
        out.append(_r(ReasonCode.MEMORY, f"needs {job.min_mem_gb:g} GB per GPU", fails["memory"]))
    if fails["gang"]:
        out.append(_r(ReasonCode.GANG, f"needs {n} GPUs in one pool", fails["gang"]))
    if fails["fabric"]:
        out.append(
            _r(
                ReasonCode.FABRIC,
                f"{n} GPUs span nodes; multi-node gangs need InfiniBand or RoCE",
                fails["fabric"],
            )
        )
    if fails["deadline"]:
        fastest = float(jc.fastest_h[j])
        msg = (
            f"finish (run + data transfer) at best {fastest:.1f} h"
            f" > deadline {job.deadline_h:.1f} h"
            if math.isfinite(fastest)
            else f"cannot finish within {job.deadline_h:g} h"
        )
        out.append(_r(ReasonCode.DEADLINE, msg, fails["deadline"]))
    if fails["locality"]:
        out.append(
            _r(ReasonCode.LOCALITY, f"outside {jc.home_province[j]} and its hub", fails["locality"])
        )
    if fails["private"]:
        out.append(_private(fails["private"]))
    hard_left = len(pools.ids) - sum(fails[s] for s in HARD_STAGES)
    if hard_left <= 0:
        return tuple(out)
    cheapest = float(jc.cheapest_net_cny_per_ref_h[j])
    if fails["price"] == hard_left:
        pool = pools.ids[int(jc.cheapest_pool[j])]
        return (
            *out,
            _r(
                ReasonCode.PRICE,
                f"bid {job.bid_cny_per_ref_gpu_hour:.2f} < cheapest feasible {cheapest:.2f} "
                f"yuan per ref GPU-hour ({pool}, fee and vouchers included)",
                fails["price"],
            ),
        )
    gpu_hint = ""
    if job.allowed_gpus and len(job.allowed_gpus) == 1:
        gpu_hint = f" {next(iter(job.allowed_gpus))}"
    fabric_hint = " in one fabric" if n > 8 else ""
    if fails["capacity"] == hard_left - fails["price"]:
        most = int(jc.max_free_ok[j])
        return (
            *out,
            _r(
                ReasonCode.CAPACITY,
                f"no pool with {n} free{gpu_hint} GPUs{fabric_hint} at a price within the bid"
                f" (most free: {max(most, 0)})",
                fails["capacity"],
            ),
        )
    room = _room_left(j, snapshot, pools, walk)
    if room is not None:
        return (*out, room)
    # Feasible pools had room at the start of the round; higher-surplus work took it.
    cand = [int(p) for p in jc.pool[_pairs_of(jc.item, j)]]
    best = min(cand, key=lambda p: prices[p] / pools.speed[p]) if cand else -1
    detail = (
        f"; cheapest candidate {pools.ids[best]} now {prices[best]:.2f} yuan/GPU-h"
        f" with {walk.state.free[best]} GPUs free"
        if best >= 0
        else ""
    )
    return (
        *out,
        _r(
            ReasonCode.CAPACITY,
            f"outbid: {len(cand)} feasible pools were filled by work with higher surplus{detail}",
            len(cand),
        ),
    )


def _room_left(j: int, snapshot: MarketSnapshot, pools: PoolArrays, walk: Walk) -> Reason | None:
    """Why job j is out although candidate pools had its GPUs free: at one with room left,
    only a voucher made it affordable and the program's budget or the buyer's cap ran out
    (PRICE); or at every one, the free GPUs are spread over nodes the gang cannot use
    (CAPACITY). None otherwise (the room went to other work)."""
    jc = walk.jc
    job = snapshot.jobs[j]
    n = job.gpus
    fragmented: list[int] = []
    # (cost per ref GPU-hour without the voucher, pool, program) of each such pool
    short: list[tuple[float, int, int]] = []
    pairs = _pairs_of(jc.item, j)
    for g in range(pairs.start, pairs.stop):
        p, v = int(jc.pool[g]), int(jc.voucher[g])
        if not walk.fits(p, n, at_start=True):
            fragmented.append(p)
            continue
        if walk.state.free[p] < n:
            continue
        if not walk.fits(p, n, at_start=False):
            fragmented.append(p)
            continue
        cost = (1.0 + walk.fee) * float(pools.reserve[p]) / float(pools.speed[p])
        if v >= 0 and job.bid_cny_per_ref_gpu_hour <= cost:
            short.append((cost, p, v))
    if short:
        cost, p, v = min(short)
        return _r(
            ReasonCode.PRICE,
            f"voucher {walk.book.programs[v].id} has no budget left for this buyer this round "
            f"(program budget or per-buyer cap); without it bid "
            f"{job.bid_cny_per_ref_gpu_hour:.2f} < {cost:.2f} yuan per ref GPU-hour "
            f"({pools.ids[p]}, fee included)",
            len(short),
        )
    if fragmented and len(fragmented) == len(pairs):
        p = fragmented[0]
        gpn = int(pools.gpn[p])
        lack = (
            f"no node with {n} free GPUs" if n <= gpn else f"fewer than {n // gpn} whole free nodes"
        )
        return _r(
            ReasonCode.CAPACITY,
            f"free GPUs are spread over nodes: {pools.ids[p]} has {lack}",
            len(fragmented),
        )
    return None


def service_reasons(
    snapshot: MarketSnapshot, pools: PoolArrays, walk: Walk
) -> dict[int, dict[str, tuple[Reason, ...]]]:
    """For each service, each city with demand left unserved and why."""
    out: dict[int, dict[str, tuple[Reason, ...]]] = {}
    for i, item in enumerate(walk.sc.items):
        left = walk.state.item_rem[i]
        if left <= _EPS_RPS:
            continue
        svc = snapshot.services[item.service]
        fails = dict(zip(SERVICE_STAGES, item.stage_fail, strict=True))
        rs: list[Reason] = []
        if fails["tpot"]:
            rs.append(
                _r(
                    ReasonCode.TPOT,
                    f"{svc.model} cannot meet TPOT {svc.tpot_ms:g} ms (or does not fit)",
                    fails["tpot"],
                )
            )
        if fails["gpu-not-allowed"]:
            rs.append(_r(ReasonCode.MODEL_NOT_ALLOWED, "GPU not allowed", fails["gpu-not-allowed"]))
        if fails["latency"] and item.best_latency is not None:
            rtt, ttft, pool = item.best_latency
            site = pool.split("/")[0]
            rs.append(
                _r(
                    ReasonCode.LATENCY,
                    f"{item.city}→{site} {rtt:.0f} ms + prefill {_duration(ttft)} > TTFT "
                    f"{_duration(svc.ttft_ms)} (closest feasible hardware)",
                    fails["latency"],
                )
            )
        if fails["locality"]:
            rs.append(
                _r(
                    ReasonCode.LOCALITY,
                    f"outside {item.city}'s province and hub",
                    fails["locality"],
                )
            )
        if fails["private"]:
            rs.append(_private(fails["private"]))
        hard = len(pools.ids) - sum(fails[s] for s in SERVICE_HARD_STAGES)
        # inf when no feasible pool has room for one more replica: then it is capacity.
        replica_cost = _cheapest_replica_cost(walk, i) if hard > 0 else math.inf
        held = sum(on.replicas for (k, _p), on in walk.state.svc.items() if k == item.service)
        if svc.max_replicas is not None and held >= svc.max_replicas:
            rs.append(
                _r(
                    ReasonCode.CAPACITY,
                    f"{left:.1f} of {item.demand_rps:.1f} req/s unserved: the service holds "
                    f"its max_replicas ({svc.max_replicas})",
                    0,
                )
            )
        elif hard > 0 and fails["price"] == hard:
            rs.append(
                _r(
                    ReasonCode.PRICE,
                    f"bid worth {item.value_cny_per_rps_hour:.2f} yuan per req/s-hour < cheapest "
                    f"feasible {item.cheapest_cost_cny_per_rps_hour:.2f} ({item.cheapest_pool})",
                    fails["price"],
                )
            )
        elif hard > 0 and left * item.value_cny_per_rps_hour < replica_cost < math.inf:
            rs.append(
                _r(
                    ReasonCode.PRICE,
                    f"{left:.2f} req/s is worth {left * item.value_cny_per_rps_hour:.2f} yuan/h, "
                    f"less than a replica costs at the cheapest feasible pool with room "
                    f"({replica_cost:.2f} yuan/h)",
                    hard - fails["price"],
                )
            )
        elif hard > 0:
            rs.append(
                _r(
                    ReasonCode.CAPACITY,
                    f"{left:.1f} of {item.demand_rps:.1f} req/s unserved: feasible pools are full",
                    hard - fails["price"],
                )
            )
        out.setdefault(item.service, {})[item.city] = tuple(rs)
    return out


def _cheapest_replica_cost(walk: Walk, i: int) -> float:
    """Cheapest hourly cost (reserve + fee) of one more replica for item i where it fits."""
    sc = walk.sc
    pairs = _pairs_of(sc.item, i)
    fee = walk.fee
    costs = [
        float(sc.gpus_per_replica[s]) * float(walk.pools.reserve[sc.pool[s]]) * (1 + fee)
        for s in pairs
        if walk.state.free[int(sc.pool[s])] >= int(sc.gpus_per_replica[s])
    ]
    return min(costs, default=float("inf"))


def _pairs_of(items: npt.NDArray[np.int64], i: int) -> range:
    """Indexes of item i's candidate pairs (pairs are grouped by item, ascending)."""
    lo = int(np.searchsorted(items, i, side="left"))
    hi = int(np.searchsorted(items, i, side="right"))
    return range(lo, hi)


def _duration(ms: float) -> str:
    """Milliseconds under a second (a tight TTFT of 0.04 s would read as noise), else s."""
    return f"{ms:.0f} ms" if ms < 1000 else f"{ms / 1000:.2f} s"


def _r(code: ReasonCode, message: str, pools: int) -> Reason:
    suffix = f" ({pools} pool{'s' if pools != 1 else ''})" if pools else ""
    return Reason(code=code, message=message + suffix, pools=pools)
