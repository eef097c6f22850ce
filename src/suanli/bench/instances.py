"""Deterministic clearing instances built from the china-2025 fleet.

Sizes (pools / pending jobs / services):

- ``small``: the pools of ~12 sites / 300 jobs / 10 services
- ``medium``: ~45 sites / 3,000 jobs / 50 services
- ``national``: the whole fleet (≥ 600 pools) / 20,000 jobs / 200 services over ≥ 30 cities

Job sizes and durations come from the committed Alibaba-trace fit (``workload.fits``);
bids, deadlines, data sizes and the idle share of each pool are documented assumptions
below. Everything is drawn from one seeded generator, so an instance depends only on
(size, seed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from suanli.catalog import load_catalog
from suanli.catalog.fleet import load_fleet
from suanli.domain import Fleet
from suanli.market.context import MarketContext
from suanli.market.snapshot import (
    BatchJob,
    BuyerId,
    InferenceService,
    JobId,
    MarketSnapshot,
    PoolState,
    ServiceId,
    VoucherProgram,
)
from suanli.perf.training import speed_factor
from suanli.workload.fits import job_size_fit, sample_jobs_shape

__all__ = ["SIZES", "Instance", "build_instance", "market_context", "pool_states"]


@dataclass(frozen=True)
class Size:
    sites: int | None
    jobs: int
    services: int


SIZES = {
    "small": Size(sites=12, jobs=300, services=10),
    "medium": Size(sites=45, jobs=3000, services=50),
    "national": Size(sites=None, jobs=20_000, services=200),
}

# (model, prompt tokens, output tokens, TTFT ms, TPOT ms): MLPerf Inference server SLOs
# and token profiles in the range of the Azure LLM 2023 code/conversation traces.
SERVICE_SHAPES = (
    ("Llama-3.1-8B", 1020, 250, 2000, 100),
    ("Llama-3.1-8B", 1020, 250, 500, 30),
    ("Qwen2.5-7B", 1600, 300, 1000, 50),
    ("Llama-3.1-70B", 1020, 250, 2000, 200),
    ("Qwen2.5-72B", 2000, 300, 2000, 100),
    ("DeepSeek-R1-Distill-Qwen-32B", 1000, 800, 2000, 80),
    ("DeepSeek-V3", 2000, 400, 2000, 80),
    # Real-time services (voice assistants, code completion): first token within a
    # human-perceptible 150 ms; ASSUMPTION in line with interactive product targets.
    ("Qwen2.5-7B", 300, 60, 150, 25),
    ("Llama-3.1-8B", 500, 30, 120, 20),
)


@dataclass(frozen=True)
class Instance:
    name: str
    snapshot: MarketSnapshot
    context: MarketContext


def market_context() -> MarketContext:
    cat = load_catalog()
    return MarketContext(
        accelerators=cat.accelerators, models=cat.models, cities=cat.cities, hubs=cat.hubs
    )


def pool_states(
    fleet: Fleet, ctx: MarketContext, rng: np.random.Generator, site_ids: Sequence[str]
) -> tuple[PoolState, ...]:
    """Pools with an idle share drawn per pool (ASSUMPTION: 50–95% idle, the report's
    20–30% utilization with spread), whole nodes free."""
    out = []
    for sid in site_ids:
        for pool in fleet.pools_of(sid):  # type: ignore[arg-type]
            idle = rng.uniform(0.5, 0.95)
            free_nodes = round(pool.nodes * idle)
            out.append(
                PoolState(
                    id=pool.id,
                    site_id=pool.site_id,
                    gpu=pool.gpu,
                    free_gpus=free_nodes * pool.gpus_per_node,
                    gpus_per_node=pool.gpus_per_node,
                    fabric=pool.fabric,
                    reserve_cny_per_gpu_hour=pool.reserve_cny_per_gpu_hour,
                    speed=speed_factor(ctx.accelerators[pool.gpu]),
                    total_gpus=pool.gpu_count,
                )
            )
    return tuple(out)


def build_instance(size: str, seed: int = 0) -> Instance:
    spec = SIZES[size]
    rng = np.random.default_rng(seed)
    ctx = market_context()
    fleet = load_fleet("china-2025")
    site_ids = sorted(fleet.sites)
    if spec.sites is not None:
        site_ids = sorted(rng.choice(site_ids, size=spec.sites, replace=False).tolist())
    pools = pool_states(fleet, ctx, rng, site_ids)
    cities = list(ctx.cities.values())
    weights = np.array([c.demand_weight for c in cities])
    weights = weights / weights.sum()

    gpus, hours = sample_jobs_shape(job_size_fit(), rng, spec.jobs)
    # ASSUMPTIONS: bids lognormal around 9 yuan per reference GPU-hour (the market rent after
    # the slide, ≈13 yuan per H100-hour, less the discount idle capacity fetches); 30% of
    # jobs have a deadline of 1.5–6× their run time; data 1–2,000 GB; 15% need ≥ 80 GB
    # cards; 10% insist on NVIDIA.
    bids = np.exp(rng.normal(np.log(9.0), 0.45, size=spec.jobs))
    has_deadline = rng.random(spec.jobs) < 0.3
    slack = rng.uniform(1.5, 6.0, size=spec.jobs)
    data_gb = np.exp(rng.uniform(0, np.log(2000), size=spec.jobs))
    needs_80 = rng.random(spec.jobs) < 0.15
    nvidia_only = rng.random(spec.jobs) < 0.10
    origin = rng.choice(len(cities), size=spec.jobs, p=weights)
    nvidia = frozenset(n for n, a in ctx.accelerators.items() if a.vendor.value == "nvidia")
    jobs = tuple(
        BatchJob(
            id=JobId(f"job-{i:05d}"),
            buyer=BuyerId(f"buyer-{int(rng.integers(0, max(10, spec.jobs // 20))):04d}"),
            gpus=int(gpus[i]),
            work_ref_gpu_hours=float(gpus[i] * hours[i]),
            bid_cny_per_ref_gpu_hour=round(float(bids[i]), 2),
            origin_city=cities[origin[i]].name,
            deadline_h=float(hours[i] * slack[i] + 1.0) if has_deadline[i] else None,
            data_gb=round(float(data_gb[i]), 1),
            min_mem_gb=80.0 if needs_80[i] else 0.0,
            allowed_gpus=nvidia if nvidia_only[i] else None,
            submitted_at_h=float(i) / spec.jobs,
        )
        for i in range(spec.jobs)
    )
    services = []
    for k in range(spec.services):
        model, prompt, output, ttft, tpot = SERVICE_SHAPES[k % len(SERVICE_SHAPES)]
        n_cities = int(rng.integers(3, min(30, len(cities)) + 1))
        chosen = rng.choice(len(cities), size=n_cities, replace=False, p=weights)
        total_rps = float(np.exp(rng.normal(np.log(60.0), 0.8)))
        demand = {
            cities[c].name: round(total_rps * weights[c] / weights[chosen].sum(), 3) for c in chosen
        }
        services.append(
            InferenceService(
                id=ServiceId(f"svc-{k:03d}"),
                buyer=BuyerId(f"buyer-svc-{k % 40:02d}"),
                model=model,
                demand_rps=demand,
                prompt_tokens=prompt,
                output_tokens=output,
                ttft_ms=ttft,
                tpot_ms=tpot,
                # ASSUMPTIONS: demand lognormal, median 60 req/s per service; bids 4–24 yuan
                # per million output tokens (DeepSeek's list price for V3 output is 8 yuan/M;
                # smaller models are cheaper, latency-tight ones dearer).
                bid_cny_per_m_output_tokens=round(float(rng.uniform(4, 24)), 2),
                submitted_at_h=float(k) / max(1, spec.services),
            )
        )
    vouchers = (
        VoucherProgram(
            id="shanghai-2025",
            name="Shanghai compute vouchers 2025 (city share)",
            coverage=0.3,
            budget_cny=600e6 / 365 / 24 * 4,  # a 4-hour slice of the ¥600M/yr program
            per_buyer_cap_cny=20_000.0,
            eligible_buyers=frozenset(j.buyer for j in jobs if j.origin_city == "Shanghai"),
        ),
        VoucherProgram(
            id="qingyang-2025",
            name="Qingyang compute vouchers (30% of contract, ¥2M cap)",
            coverage=0.3,
            budget_cny=100e6 / 365 / 24 * 4,
            per_buyer_cap_cny=2e6,
            eligible_provinces=frozenset({"Gansu"}),
        ),
    )
    snapshot = MarketSnapshot(
        now_h=0.0,
        sites={sid: fleet.sites[sid] for sid in site_ids},
        pools=pools,
        jobs=jobs,
        services=tuple(services),
        vouchers=vouchers,
    )
    return Instance(name=f"{size}-seed{seed}", snapshot=snapshot, context=ctx)
