"""Builders for hand-made markets: real cluster sites, pools, jobs, services, snapshots.

Sites sit at the national clusters' catalogue coordinates (Yangtze demonstration zone in
Shanghai, Zhongwei in Ningxia, …), so RTTs come from real geography. The factories are
fixtures because test modules cannot import each other (pytest importlib mode).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest

from suanli.bench.instances import market_context
from suanli.catalog import load_catalog
from suanli.domain import Fabric, PoolId, Region, Site, SiteId
from suanli.market.context import MarketContext
from suanli.market.decision import Decision
from suanli.market.policies import make_policy
from suanli.market.snapshot import (
    BatchJob,
    BuyerId,
    InferenceService,
    JobId,
    MarketRules,
    MarketSnapshot,
    PoolState,
    ServiceId,
    VoucherProgram,
)

# Short timeout: the markets here are tiny, HiGHS proves optimality in milliseconds.
MILP_TIME_LIMIT_S = 5.0


def cluster_sites() -> dict[str, Site]:
    """One site per national cluster, at the cluster's coordinates, 10 Gbps WAN."""
    cat = load_catalog()
    return {
        c.id: Site(
            id=SiteId(c.id),
            name=c.name,
            province=c.province,
            city=c.name,
            region=cat.hubs[c.hub_id].region,
            lat=c.lat,
            lon=c.lon,
            hub_id=c.hub_id,
            cluster_id=c.id,
            pue=c.pue,
            power_price_cny_per_kwh=0.4 if cat.hubs[c.hub_id].region is not Region.EAST else 0.7,
            wan_gbps=10.0,
            operator="test",
        )
        for c in cat.clusters.values()
    }


@pytest.fixture(scope="session")
def ctx() -> MarketContext:
    return market_context()


@pytest.fixture(scope="session")
def sites() -> dict[str, Site]:
    return cluster_sites()


@pytest.fixture(scope="session")
def make_pool() -> Callable[..., PoolState]:
    """``make_pool("yangtze-demo-zone", "H100", free_gpus=8, reserve=10.0, …)``; id "site/gpu"."""

    def make(
        site: str,
        gpu: str = "H100",
        *,
        free_gpus: int = 8,
        reserve: float = 10.0,
        speed: float = 1.0,
        gpus_per_node: int = 8,
        fabric: Fabric = Fabric.INFINIBAND,
        total_gpus: int | None = None,
        free_nodes: tuple[int, ...] | None = None,
        pool_id: str | None = None,
    ) -> PoolState:
        return PoolState(
            id=PoolId(pool_id or f"{site}/{gpu}"),
            site_id=SiteId(site),
            gpu=gpu,
            free_gpus=free_gpus,
            gpus_per_node=gpus_per_node,
            fabric=fabric,
            reserve_cny_per_gpu_hour=reserve,
            speed=speed,
            free_nodes=free_nodes,
            total_gpus=total_gpus,
        )

    return make


@pytest.fixture(scope="session")
def make_job() -> Callable[..., BatchJob]:
    """``make_job("a", bid=15.0, gpus=8, work=80.0, …)``: buyer "acme" from Shanghai."""

    def make(
        job_id: str,
        *,
        bid: float,
        gpus: int = 8,
        work: float = 80.0,
        buyer: str = "acme",
        origin_city: str = "Shanghai",
        **extra: Any,
    ) -> BatchJob:
        return BatchJob(
            id=JobId(job_id),
            buyer=BuyerId(buyer),
            gpus=gpus,
            work_ref_gpu_hours=work,
            bid_cny_per_ref_gpu_hour=bid,
            origin_city=origin_city,
            **extra,
        )

    return make


@pytest.fixture(scope="session")
def make_service() -> Callable[..., InferenceService]:
    """A Llama-3.1-8B service, 300 prompt / 60 output tokens, TPOT 25 ms."""

    def make(
        service_id: str,
        *,
        demand_rps: Mapping[str, float],
        ttft_ms: float,
        bid: float = 20.0,
        model: str = "Llama-3.1-8B",
        prompt_tokens: float = 300.0,
        output_tokens: float = 60.0,
        tpot_ms: float = 25.0,
        buyer: str = "acme",
        **extra: Any,
    ) -> InferenceService:
        return InferenceService(
            id=ServiceId(service_id),
            buyer=BuyerId(buyer),
            model=model,
            demand_rps=dict(demand_rps),
            prompt_tokens=prompt_tokens,
            output_tokens=output_tokens,
            ttft_ms=ttft_ms,
            tpot_ms=tpot_ms,
            bid_cny_per_m_output_tokens=bid,
            **extra,
        )

    return make


@pytest.fixture(scope="session")
def make_snapshot(sites: dict[str, Site]) -> Callable[..., MarketSnapshot]:
    """A snapshot at now_h = 0 over the sites the pools name; fee 0 unless given."""

    def make(
        pools: tuple[PoolState, ...] | list[PoolState],
        jobs: tuple[BatchJob, ...] | list[BatchJob] = (),
        services: tuple[InferenceService, ...] | list[InferenceService] = (),
        vouchers: tuple[VoucherProgram, ...] | list[VoucherProgram] = (),
        *,
        fee_rate: float = 0.0,
        now_h: float = 0.0,
        **rules: Any,
    ) -> MarketSnapshot:
        used = {p.site_id: sites[p.site_id] for p in pools}
        return MarketSnapshot(
            now_h=now_h,
            sites=used,
            pools=tuple(pools),
            jobs=tuple(jobs),
            services=tuple(services),
            vouchers=tuple(vouchers),
            rules=MarketRules(fee_rate=fee_rate, **rules),
        )

    return make


@pytest.fixture(scope="session")
def clear(ctx: MarketContext) -> Callable[..., Decision]:
    """``clear(snapshot, policy="exchange")`` → Decision."""

    def run(snapshot: MarketSnapshot, policy: str = "exchange") -> Decision:
        return make_policy(policy, ctx, milp_time_limit_s=MILP_TIME_LIMIT_S).clear(snapshot)

    return run
