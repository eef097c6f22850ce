"""Snapshot → arrays: the pools, sites and vouchers as numpy vectors for the hot path."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from suanli.errors import InvalidInput
from suanli.market.context import MarketContext
from suanli.market.snapshot import MarketSnapshot, VoucherProgram

__all__ = ["PoolArrays", "VoucherArrays", "pool_arrays", "voucher_arrays"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
B = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class PoolArrays:
    """Per-pool vectors, index-aligned with ``snapshot.pools``."""

    ids: list[str]
    speed: F64
    reserve: F64
    free: I64
    size: I64
    gpn: I64
    high_bw: B
    mem_gb: F64
    wan_gbps: F64
    domestic: B
    site_index: I64
    gpu_index: I64
    gpu_names: list[str]
    site_ids: list[str]
    site_lat: F64
    site_lon: F64
    site_province: list[str]
    site_hub: list[str | None]
    private_to: list[str | None]  # per pool: the only buyer its site takes work from

    def private_codes(self, buyers: list[str]) -> tuple[I64, I64] | None:
        """Integer codes for the private-site test, or None when no pool is private:
        (per pool: −1 for an open pool, else its buyer's code; per ``buyers`` entry: its
        code, −2 for a buyer no pool is private to). A pair passes when the pool's code is
        −1 or equals the buyer's."""
        owners = sorted({b for b in self.private_to if b is not None})
        if not owners:
            return None
        at = {b: i for i, b in enumerate(owners)}
        pool_code = np.array([-1 if b is None else at[b] for b in self.private_to], np.int64)
        buyer_code = np.array([at.get(b, -2) for b in buyers], dtype=np.int64)
        return pool_code, buyer_code


def pool_arrays(snapshot: MarketSnapshot, ctx: MarketContext) -> PoolArrays:
    """Vectors over pools; raises InvalidInput for a pool naming an unknown site or GPU."""
    site_ids: list[str] = [str(s) for s in snapshot.sites]
    site_at = {sid: i for i, sid in enumerate(site_ids)}
    gpu_names = sorted({p.gpu for p in snapshot.pools})
    gpu_at = {g: i for i, g in enumerate(gpu_names)}
    for pool in snapshot.pools:
        if pool.site_id not in site_at:
            raise InvalidInput(f"pool {pool.id!r} names site {pool.site_id!r}, not in the snapshot")
        if pool.gpu not in ctx.accelerators:
            raise InvalidInput(
                f"pool {pool.id!r} has GPU {pool.gpu!r}, not in the catalogue "
                f"(known: {', '.join(sorted(ctx.accelerators))})"
            )
    pools = snapshot.pools
    sites = list(snapshot.sites.values())
    acc = [ctx.accelerators[p.gpu] for p in pools]
    return PoolArrays(
        ids=[p.id for p in pools],
        speed=np.array([p.speed for p in pools], dtype=np.float64),
        reserve=np.array([p.reserve_cny_per_gpu_hour for p in pools], dtype=np.float64),
        free=np.array([p.free_gpus for p in pools], dtype=np.int64),
        size=np.array([p.size_gpus for p in pools], dtype=np.int64),
        gpn=np.array([p.gpus_per_node for p in pools], dtype=np.int64),
        high_bw=np.array([p.fabric.high_bandwidth for p in pools], dtype=np.bool_),
        mem_gb=np.array([a.mem_gb for a in acc], dtype=np.float64),
        wan_gbps=np.array([snapshot.sites[p.site_id].wan_gbps for p in pools], dtype=np.float64),
        domestic=np.array([a.domestic for a in acc], dtype=np.bool_),
        site_index=np.array([site_at[p.site_id] for p in pools], dtype=np.int64),
        gpu_index=np.array([gpu_at[p.gpu] for p in pools], dtype=np.int64),
        gpu_names=gpu_names,
        site_ids=site_ids,
        site_lat=np.array([s.lat for s in sites], dtype=np.float64),
        site_lon=np.array([s.lon for s in sites], dtype=np.float64),
        site_province=[s.province for s in sites],
        site_hub=[s.hub_id for s in sites],
        private_to=[snapshot.sites[p.site_id].private_to for p in pools],
    )


@dataclass(frozen=True)
class VoucherArrays:
    """Active programs and, per program, which pools they cover."""

    programs: list[VoucherProgram]
    coverage: F64
    pool_mask: B  # (V, P)


def voucher_arrays(snapshot: MarketSnapshot, pools: PoolArrays) -> VoucherArrays:
    """Programs valid at ``now_h`` with budget left, and the pools each covers."""
    active = [
        v
        for v in snapshot.vouchers
        if v.valid_from_h <= snapshot.now_h < v.valid_until_h and v.spent_cny < v.budget_cny
    ]
    mask = np.zeros((len(active), len(pools.ids)), dtype=np.bool_)
    site_of_pool = pools.site_index
    for i, v in enumerate(active):
        site_ok = np.array(
            [
                (v.eligible_sites is None or sid in v.eligible_sites)
                and (v.eligible_hubs is None or hub in v.eligible_hubs)
                and (v.eligible_provinces is None or prov in v.eligible_provinces)
                for sid, hub, prov in zip(
                    pools.site_ids, pools.site_hub, pools.site_province, strict=True
                )
            ],
            dtype=np.bool_,
        )
        row = site_ok[site_of_pool] if len(site_of_pool) else np.zeros(0, dtype=np.bool_)
        if v.domestic_gpus_only:
            row = row & pools.domestic
        mask[i] = row
    return VoucherArrays(
        programs=active,
        coverage=np.array([v.coverage for v in active], dtype=np.float64),
        pool_mask=mask,
    )
