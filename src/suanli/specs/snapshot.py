"""The snapshot file of ``suanli clear``: a market written as JSON or YAML.

Example (YAML)::

    fleet: china-2025          # sites and pools from a built-in fleet …
    free_share: 0.6            # … with this share of each pool's whole nodes free
    pools: []                  # … or pools listed here (site ids from the fleet or `sites`)
    jobs:
      - {id: train-1, buyer: acme, gpus: 16, work_ref_gpu_hours: 160,
         bid_cny_per_ref_gpu_hour: 9, origin_city: Shanghai, deadline_h: 24}
    services:
      - {id: chat, buyer: acme, model: Llama-3.1-8B, demand_rps: {Shanghai: 20},
         prompt_tokens: 1000, output_tokens: 250, ttft_ms: 2000, tpot_ms: 100,
         bid_cny_per_m_output_tokens: 8}
      # Bids shaped like an LLM API price list, in yuan per million tokens: input on a
      # cache miss, input on a cache hit (cached_fraction of the prompt), output; all
      # optional but the output bid. Replica bounds are optional too.
      - {id: docs, buyer: acme, model: Llama-3.1-8B, demand_rps: {Beijing: 2},
         prompt_tokens: 12000, output_tokens: 343, ttft_ms: 10000, tpot_ms: 50,
         bid_cny_per_m_input_tokens: 2, bid_cny_per_m_cached_input_tokens: 0.5,
         cached_fraction: 0.5, bid_cny_per_m_output_tokens: 8,
         min_replicas: 1, max_replicas: 8}
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from suanli.catalog import Catalog, load_catalog
from suanli.catalog.queries import accelerator, city, model
from suanli.domain import Fabric, PoolId, Region, Site, SiteId
from suanli.errors import InvalidInput, UnknownName
from suanli.market.context import MarketContext
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
from suanli.perf.training import speed_factor
from suanli.specs._parse import load_document, parse_model

__all__ = ["SnapshotSpec", "load_snapshot", "snapshot_from_spec"]

T = TypeVar("T")

_STRICT = ConfigDict(extra="forbid", frozen=True)
Pos = Field(gt=0, allow_inf_nan=False)
NonNeg = Field(ge=0, allow_inf_nan=False)


class SiteSpec(BaseModel):
    model_config = _STRICT
    id: str = Field(min_length=1)
    name: str | None = None
    province: str
    city: str = ""
    region: Region = Region.EAST
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    hub_id: str | None = None
    pue: float = Field(default=1.3, ge=1.0, le=3.0)
    power_price_cny_per_kwh: float = Field(default=0.6, ge=0)
    wan_gbps: float = Field(default=10.0, gt=0)


class PoolSpec(BaseModel):
    model_config = _STRICT
    id: str = Field(min_length=1)
    site_id: str
    gpu: str
    free_gpus: int = Field(ge=0)
    gpus_per_node: int = Field(default=8, gt=0, le=64)
    fabric: Fabric = Fabric.ETHERNET
    reserve_cny_per_gpu_hour: float = NonNeg
    speed: float | None = Field(default=None, gt=0)
    total_gpus: int | None = Field(default=None, ge=0)


class JobSpec(BaseModel):
    model_config = _STRICT
    id: str = Field(min_length=1)
    buyer: str = Field(min_length=1)
    gpus: int = Field(gt=0, le=100_000)
    work_ref_gpu_hours: float = Pos
    bid_cny_per_ref_gpu_hour: float = NonNeg
    origin_city: str
    deadline_h: float | None = Field(default=None, gt=0)
    data_gb: float = Field(default=0.0, ge=0)
    min_mem_gb: float = Field(default=0.0, ge=0)
    allowed_gpus: list[str] | None = None
    interruptible: bool = False
    submitted_at_h: float = 0.0


class ServiceSpec(BaseModel):
    model_config = _STRICT
    id: str = Field(min_length=1)
    buyer: str = Field(min_length=1)
    model: str
    demand_rps: dict[str, float]
    prompt_tokens: float = Pos
    output_tokens: float = Pos
    ttft_ms: float = Pos
    tpot_ms: float = Pos
    bid_cny_per_m_output_tokens: float = NonNeg
    bid_cny_per_m_input_tokens: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    bid_cny_per_m_cached_input_tokens: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    cached_fraction: float = Field(default=0.0, ge=0, le=1, allow_inf_nan=False)
    min_replicas: int = Field(default=0, ge=0, le=100_000)
    max_replicas: int | None = Field(default=None, ge=1, le=100_000)
    allowed_gpus: list[str] | None = None
    submitted_at_h: float = 0.0

    @model_validator(mode="after")
    def _bounds(self) -> ServiceSpec:
        if self.max_replicas is not None and self.max_replicas < self.min_replicas:
            raise ValueError(
                f"max_replicas ({self.max_replicas}) is below min_replicas ({self.min_replicas})"
            )
        return self

    @field_validator("demand_rps")
    @classmethod
    def _demand(cls, v: dict[str, float]) -> dict[str, float]:
        for c, rps in v.items():
            if not (math.isfinite(rps) and rps >= 0):
                raise ValueError(f"demand for {c!r} must be a number ≥ 0, got {rps}")
        return v


class VoucherSpec(BaseModel):
    model_config = _STRICT
    id: str = Field(min_length=1)
    name: str = ""
    coverage: float = Field(gt=0, lt=1)
    budget_cny: float = NonNeg
    per_buyer_cap_cny: float | None = Field(default=None, ge=0)
    spent_cny: float = Field(default=0.0, ge=0)
    eligible_sites: list[str] | None = None
    eligible_hubs: list[str] | None = None
    eligible_provinces: list[str] | None = None
    eligible_buyers: list[str] | None = None
    domestic_gpus_only: bool = False


class RulesSpec(BaseModel):
    model_config = _STRICT
    fee_rate: float = Field(default=0.02, ge=0, lt=1)
    service_horizon_h: float = Field(default=0.25, gt=0)
    candidate_pools: int = Field(default=30, gt=0)


class SnapshotSpec(BaseModel):
    model_config = _STRICT
    now_h: float = 0.0
    fleet: str | None = None
    free_share: float = Field(default=1.0, ge=0, le=1)
    sites: list[SiteSpec] = []
    pools: list[PoolSpec] = []
    jobs: list[JobSpec] = []
    services: list[ServiceSpec] = []
    vouchers: list[VoucherSpec] = []
    rules: RulesSpec = RulesSpec()


def load_snapshot(path: Path) -> tuple[MarketSnapshot, MarketContext]:
    """Read, validate and resolve a snapshot file; InvalidInput says what is wrong."""
    document = load_document(path)
    if document is None:
        raise InvalidInput(f"{path}: the file is empty; it needs at least `pools` or `fleet`")
    spec = parse_model(SnapshotSpec, document, str(path))
    return snapshot_from_spec(spec)


def snapshot_from_spec(spec: SnapshotSpec) -> tuple[MarketSnapshot, MarketContext]:
    cat = load_catalog()
    ctx = MarketContext(
        accelerators=cat.accelerators, models=cat.models, cities=cat.cities, hubs=cat.hubs
    )
    sites: dict[SiteId, Site] = {}
    pools: list[PoolState] = []
    if spec.fleet is not None:
        from suanli.catalog.fleet import load_fleet

        fleet = load_fleet(spec.fleet)
        sites.update(fleet.sites)
        if not spec.pools:
            for p in fleet.pools.values():
                free = int(p.nodes * spec.free_share) * p.gpus_per_node
                pools.append(
                    PoolState(
                        id=p.id,
                        site_id=p.site_id,
                        gpu=p.gpu,
                        free_gpus=free,
                        gpus_per_node=p.gpus_per_node,
                        fabric=p.fabric,
                        reserve_cny_per_gpu_hour=p.reserve_cny_per_gpu_hour,
                        speed=speed_factor(cat.accelerators[p.gpu]),
                        total_gpus=p.gpu_count,
                    )
                )
    for s in spec.sites:
        sites[SiteId(s.id)] = Site(
            id=SiteId(s.id),
            name=s.name or s.id,
            province=s.province,
            city=s.city,
            region=s.region,
            lat=s.lat,
            lon=s.lon,
            hub_id=s.hub_id,
            cluster_id=None,
            pue=s.pue,
            power_price_cny_per_kwh=s.power_price_cny_per_kwh,
            wan_gbps=s.wan_gbps,
            operator="custom",
        )
    for i, ps in enumerate(spec.pools):
        if ps.site_id not in sites:
            raise InvalidInput(
                f"pools.{i} ({ps.id}): site {ps.site_id!r} is not in `sites` or the fleet"
            )
        gpu = _named(accelerator, cat, ps.gpu, f"pools.{i}.gpu ({ps.id})")
        pools.append(
            PoolState(
                id=PoolId(ps.id),
                site_id=SiteId(ps.site_id),
                gpu=gpu.name,
                free_gpus=ps.free_gpus,
                gpus_per_node=ps.gpus_per_node,
                fabric=ps.fabric,
                reserve_cny_per_gpu_hour=ps.reserve_cny_per_gpu_hour,
                speed=ps.speed if ps.speed is not None else speed_factor(gpu),
                total_gpus=ps.total_gpus,
            )
        )
    if not pools:
        raise InvalidInput("the snapshot has no pools: give `pools`, or `fleet: china-2025`")
    jobs = tuple(
        BatchJob(
            id=JobId(j.id),
            buyer=BuyerId(j.buyer),
            gpus=j.gpus,
            work_ref_gpu_hours=j.work_ref_gpu_hours,
            bid_cny_per_ref_gpu_hour=j.bid_cny_per_ref_gpu_hour,
            origin_city=_named(city, cat, j.origin_city, f"jobs.{i}.origin_city ({j.id})").name,
            deadline_h=j.deadline_h,
            data_gb=j.data_gb,
            min_mem_gb=j.min_mem_gb,
            allowed_gpus=(
                frozenset(
                    _named(accelerator, cat, g, f"jobs.{i}.allowed_gpus ({j.id})").name
                    for g in j.allowed_gpus
                )
                if j.allowed_gpus is not None
                else None
            ),
            interruptible=j.interruptible,
            submitted_at_h=j.submitted_at_h,
        )
        for i, j in enumerate(spec.jobs)
    )
    services = tuple(
        InferenceService(
            id=ServiceId(s.id),
            buyer=BuyerId(s.buyer),
            model=_named(model, cat, s.model, f"services.{k}.model ({s.id})").name,
            demand_rps={
                _named(city, cat, c, f"services.{k}.demand_rps ({s.id})").name: rps
                for c, rps in s.demand_rps.items()
            },
            prompt_tokens=s.prompt_tokens,
            output_tokens=s.output_tokens,
            ttft_ms=s.ttft_ms,
            tpot_ms=s.tpot_ms,
            bid_cny_per_m_output_tokens=s.bid_cny_per_m_output_tokens,
            bid_cny_per_m_input_tokens=s.bid_cny_per_m_input_tokens,
            bid_cny_per_m_cached_input_tokens=s.bid_cny_per_m_cached_input_tokens,
            cached_fraction=s.cached_fraction,
            min_replicas=s.min_replicas,
            max_replicas=s.max_replicas,
            allowed_gpus=(
                frozenset(
                    _named(accelerator, cat, g, f"services.{k}.allowed_gpus ({s.id})").name
                    for g in s.allowed_gpus
                )
                if s.allowed_gpus is not None
                else None
            ),
            submitted_at_h=s.submitted_at_h,
        )
        for k, s in enumerate(spec.services)
    )
    vouchers = tuple(
        VoucherProgram(
            id=v.id,
            name=v.name or v.id,
            coverage=v.coverage,
            budget_cny=v.budget_cny,
            per_buyer_cap_cny=v.per_buyer_cap_cny,
            spent_cny=v.spent_cny,
            eligible_sites=frozenset(v.eligible_sites) if v.eligible_sites is not None else None,
            eligible_hubs=frozenset(v.eligible_hubs) if v.eligible_hubs is not None else None,
            eligible_provinces=(
                frozenset(v.eligible_provinces) if v.eligible_provinces is not None else None
            ),
            eligible_buyers=(
                frozenset(v.eligible_buyers) if v.eligible_buyers is not None else None
            ),
            domestic_gpus_only=v.domestic_gpus_only,
        )
        for v in spec.vouchers
    )
    snapshot = MarketSnapshot(
        now_h=spec.now_h,
        sites=sites,
        pools=tuple(pools),
        jobs=jobs,
        services=services,
        vouchers=vouchers,
        rules=MarketRules(**spec.rules.model_dump()),
    )
    return snapshot, ctx


def _named(lookup: Callable[[Catalog, str], T], cat: Catalog, name: str, where: str) -> T:
    """``lookup(cat, name)``; an UnknownName also says where in the file the name was."""
    try:
        return lookup(cat, name)
    except UnknownName as exc:
        exc.args = (f"{where}: {exc}",)
        raise
