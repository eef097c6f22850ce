"""Hard filters and candidate pools for batch jobs, vectorized over job × pool.

For job j on pool p (n GPUs, work W reference GPU-hours, bid b per reference GPU-hour,
pool speed f in reference GPUs per GPU, reserve r per GPU-hour, fee rate φ, voucher
coverage s where a program covers the pair):

- filters, in this order (a pool's first failing filter is its reason):
  gpu allowed → memory ≥ need → gang n ≤ pool size → multi-node (n > GPUs per node)
  only on a high-bandwidth fabric → deadline: W / (n f) + data_gb · 8 / (wan_gbps · 3600)
  ≤ deadline_h → (locality, for the status-quo policy) → private: a site private to one
  buyer takes only that buyer's work;
- surplus per GPU-hour: u = f · b / (1 − s) / (1 + φ) − r. The price test is u > 0;
- candidates: pools passing every filter with u > 0 and n free GPUs now, the best
  ``rules.candidate_pools`` by u.

Dividing the DESIGN's job value W (b − r/f) by the job's occupancy time W / (n f) gives
n (f b − r): the surplus rate per hour, which is what a capacity constraint on GPUs at one
instant trades off (and makes the capacity dual a price per GPU-hour).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from suanli.market.arrays import PoolArrays, VoucherArrays
from suanli.market.context import MarketContext
from suanli.market.snapshot import MarketSnapshot

__all__ = ["FILTER_STAGES", "HARD_STAGES", "ORDERS", "JobCandidates", "job_candidates"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

# Filter stages in order; ``stage_fail[j, k]`` counts pools whose first failure is stage k.
HARD_STAGES = ("gpu-not-allowed", "memory", "gang", "fabric", "deadline", "locality", "private")
FILTER_STAGES = (*HARD_STAGES, "price", "capacity")
_PRICE, _CAPACITY = FILTER_STAGES.index("price"), FILTER_STAGES.index("capacity")
# How candidates are ranked: by surplus (the exchange), by the buyer's cost per reference
# GPU-hour (a price-taking broker), or by RTT from the job's origin city (price-blind).
ORDERS = ("surplus", "cheapest", "nearest")
_CHUNK = 2048
_THREADS = 2


@dataclass(frozen=True)
class JobCandidates:
    """Candidate (job, pool) pairs plus per-job facts for explaining what was left out."""

    item: I64
    pool: I64
    u: F64
    voucher: I64  # program index into VoucherArrays.programs, −1 for none
    coverage: F64
    rank: F64  # the order's score (higher first)
    n: I64
    work: F64
    bid: F64
    stage_fail: I64  # (J, len(FILTER_STAGES))
    cheapest_net_cny_per_ref_h: F64  # best buyer cost among hard-feasible pools (inf: none)
    cheapest_pool: I64
    fastest_h: F64  # shortest completion among pools that fail only the deadline
    max_free_ok: I64  # most free GPUs among hard-feasible, price-ok pools (−1: none)
    origin_city: I64
    home_province: list[str]


def job_candidates(
    snapshot: MarketSnapshot,
    ctx: MarketContext,
    pools: PoolArrays,
    vouchers: VoucherArrays,
    *,
    max_candidates: int | None = None,
    require_free: bool = True,
    order: str = "surplus",
    local_only: bool = False,
    origin_rtt_ms: F64 | None = None,
) -> JobCandidates:
    """Filter every job against every pool, in chunks, and keep the best candidates.

    ``origin_rtt_ms`` (cities × sites) is needed for ``order="nearest"``. With
    ``local_only`` a job only sees pools in its origin city's province or hub.
    """
    jobs = snapshot.jobs
    fee = snapshot.rules.fee_rate
    k_keep = max_candidates or snapshot.rules.candidate_pools
    n_pools = len(pools.ids)
    city_names = list(ctx.cities)
    city_at = {c: i for i, c in enumerate(city_names)}

    n = np.array([j.gpus for j in jobs], dtype=np.int64)
    work = np.array([j.work_ref_gpu_hours for j in jobs], dtype=np.float64)
    bid = np.array([j.bid_cny_per_ref_gpu_hour for j in jobs], dtype=np.float64)
    deadline = np.array(
        [np.inf if j.deadline_h is None else j.deadline_h for j in jobs], dtype=np.float64
    )
    data_gb = np.array([j.data_gb for j in jobs], dtype=np.float64)
    min_mem = np.array([j.min_mem_gb for j in jobs], dtype=np.float64)
    origin = np.array([city_at[j.origin_city] for j in jobs], dtype=np.int64)
    home = [ctx.cities[j.origin_city].province for j in jobs]
    if local_only:
        home_hub = [ctx.hub_of_province(p) for p in home]
        site_prov = np.array(pools.site_province, dtype=object)[pools.site_index]
        site_hub = np.array(pools.site_hub, dtype=object)[pools.site_index]
    n_gpu_models = len(pools.gpu_names)
    allowed = np.ones((len(jobs), max(n_gpu_models, 1)), dtype=np.bool_)
    for i, j in enumerate(jobs):
        if j.allowed_gpus is not None:
            allowed[i, :n_gpu_models] = [g in j.allowed_gpus for g in pools.gpu_names]
    private = pools.private_codes([j.buyer for j in jobs])
    n_programs = len(vouchers.programs)
    buyer_ok = np.zeros((n_programs, len(jobs)), dtype=np.bool_)
    for v, prog in enumerate(vouchers.programs):
        buyer_ok[v] = [
            prog.eligible_buyers is None or j.buyer in prog.eligible_buyers for j in jobs
        ]

    out_item: list[I64] = []
    out_pool: list[I64] = []
    out_u: list[F64] = []
    out_v: list[I64] = []
    out_s: list[F64] = []
    out_rank: list[F64] = []
    stage_fail = np.zeros((len(jobs), len(FILTER_STAGES)), dtype=np.int64)
    cheapest = np.full(len(jobs), np.inf)
    cheapest_pool = np.full(len(jobs), -1, dtype=np.int64)
    fastest = np.full(len(jobs), np.inf)
    max_free_ok = np.full(len(jobs), -1, dtype=np.int64)
    transfer_h_per_gb = 8.0 / (pools.wan_gbps * 3600.0)

    def _chunk(lo: int) -> tuple[npt.NDArray[np.generic], ...]:
        """Filter jobs [lo, lo + _CHUNK); per-job facts go to their own slices."""
        hi = min(lo + _CHUNK, len(jobs))
        nj = n[lo:hi, None]
        ok_gpu = allowed[lo:hi][:, pools.gpu_index] if n_pools else np.zeros((hi - lo, 0), bool)
        ok_mem = pools.mem_gb[None, :] >= min_mem[lo:hi, None]
        ok_gang = nj <= pools.size[None, :]
        ok_fabric = (nj <= pools.gpn[None, :]) | pools.high_bw[None, :]
        run_h = work[lo:hi, None] / (nj * pools.speed[None, :])
        finish_h = run_h + data_gb[lo:hi, None] * transfer_h_per_gb[None, :]
        ok_deadline = finish_h <= deadline[lo:hi, None]

        if n_programs:
            cover = np.where(
                buyer_ok[:, lo:hi, None] & vouchers.pool_mask[:, None, :],
                vouchers.coverage[:, None, None],
                0.0,
            )
            v_idx = np.argmax(cover, axis=0)
            s = np.take_along_axis(cover, v_idx[None], axis=0)[0]
            v_idx = np.where(s > 0, v_idx, -1)
        else:
            s = np.zeros((hi - lo, n_pools))
            v_idx = np.full((hi - lo, n_pools), -1, dtype=np.int64)
        u = (
            pools.speed[None, :] * bid[lo:hi, None] / (1.0 - s) / (1.0 + fee)
            - pools.reserve[None, :]
        )
        ok_price = u > 0
        ok_free = nj <= pools.free[None, :] if require_free else np.ones_like(ok_price)

        alive = np.ones_like(ok_gpu)
        if local_only:
            hp = np.array(home[lo:hi], dtype=object)[:, None]
            hh = np.array(home_hub[lo:hi], dtype=object)[:, None]
            ok_local = (site_prov[None, :] == hp) | ((site_hub[None, :] == hh) & (hh != None))  # noqa: E711
        else:
            ok_local = np.ones_like(ok_gpu)
        if private is None:
            ok_private = np.ones_like(ok_gpu)
        else:
            owner, buyer = private[0][None, :], private[1][lo:hi, None]
            ok_private = (owner == -1) | (owner == buyer)
        stages = (ok_gpu, ok_mem, ok_gang, ok_fabric, ok_deadline, ok_local, ok_private)
        for k, (stage, mask) in enumerate(zip(HARD_STAGES, stages, strict=True)):
            if stage == "deadline":
                # Among the pools the deadline is about to reject (the others meet it).
                late = alive & ~ok_deadline
                fastest[lo:hi] = np.min(np.where(late, finish_h, np.inf), axis=1, initial=np.inf)
            stage_fail[lo:hi, k] = np.count_nonzero(alive & ~mask, axis=1)
            alive &= mask
        hard = alive
        net = (1.0 + fee) * pools.reserve[None, :] / pools.speed[None, :] * (1.0 - s)
        net_hard = np.where(hard, net, np.inf)
        if n_pools:
            cheapest_pool[lo:hi] = np.argmin(net_hard, axis=1)
            cheapest[lo:hi] = net_hard[np.arange(hi - lo), cheapest_pool[lo:hi]]
        cheapest_pool[lo:hi] = np.where(np.isfinite(cheapest[lo:hi]), cheapest_pool[lo:hi], -1)
        stage_fail[lo:hi, _PRICE] = np.count_nonzero(hard & ~ok_price, axis=1)
        priced = hard & ok_price
        max_free_ok[lo:hi] = np.max(np.where(priced, pools.free[None, :], -1), axis=1, initial=-1)
        stage_fail[lo:hi, _CAPACITY] = np.count_nonzero(priced & ~ok_free, axis=1)
        cand = priced & ok_free

        if order == "surplus":
            score = u
        elif order == "cheapest":
            score = -net
        elif order == "nearest":
            assert origin_rtt_ms is not None, "order='nearest' needs origin_rtt_ms"
            score = -origin_rtt_ms[origin[lo:hi]][:, pools.site_index]
        else:
            raise ValueError(f"unknown candidate order {order!r}; expected one of {ORDERS}")
        scored = np.where(cand, score, -np.inf)
        if n_pools > k_keep:
            top = np.argpartition(-scored, k_keep - 1, axis=1)[:, :k_keep]
        else:
            top = np.broadcast_to(np.arange(n_pools), (hi - lo, n_pools))
        rows = np.broadcast_to(np.arange(hi - lo)[:, None], top.shape)
        keep = np.isfinite(scored[rows, top])
        return (
            (rows[keep] + lo).astype(np.int64),
            top[keep].astype(np.int64),
            u[rows, top][keep],
            v_idx[rows, top][keep].astype(np.int64),
            s[rows, top][keep],
            scored[rows, top][keep],
        )

    # numpy releases the GIL in its kernels: two threads use both cores. Chunks write
    # disjoint slices and results are joined in chunk order, so the output is the same.
    starts = range(0, len(jobs), _CHUNK)
    if len(starts) > 1:
        with ThreadPoolExecutor(max_workers=_THREADS) as pool_exec:
            results = list(pool_exec.map(_chunk, starts))
    else:
        results = [_chunk(lo) for lo in starts]
    for item_p, pool_p, u_p, v_p, s_p, rank_p in results:
        out_item.append(item_p)  # type: ignore[arg-type]
        out_pool.append(pool_p)  # type: ignore[arg-type]
        out_u.append(u_p)  # type: ignore[arg-type]
        out_v.append(v_p)  # type: ignore[arg-type]
        out_s.append(s_p)  # type: ignore[arg-type]
        out_rank.append(rank_p)  # type: ignore[arg-type]

    def cat(parts: list[npt.NDArray[np.generic]], dtype: type) -> npt.NDArray[np.generic]:
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)

    return JobCandidates(
        item=cat(out_item, np.int64),  # type: ignore[arg-type]
        pool=cat(out_pool, np.int64),  # type: ignore[arg-type]
        u=cat(out_u, np.float64),  # type: ignore[arg-type]
        voucher=cat(out_v, np.int64),  # type: ignore[arg-type]
        coverage=cat(out_s, np.float64),  # type: ignore[arg-type]
        rank=cat(out_rank, np.float64),  # type: ignore[arg-type]
        n=n,
        work=work,
        bid=bid,
        stage_fail=stage_fail,
        cheapest_net_cny_per_ref_h=cheapest,
        cheapest_pool=cheapest_pool,
        fastest_h=fastest,
        max_free_ok=max_free_ok,
        origin_city=origin,
        home_province=home,
    )
