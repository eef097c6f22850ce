"""The workload of a run, drawn once per (scenario, seed) and replayed for every policy.

- Batch jobs: a Poisson process whose rate is ``jobs_per_hour`` × the mix's batch
  multiplier at that time, drawn by time rescaling (Poisson count, uniform points on the
  cumulative intensity, mapped back to time). GPUs and run time on reference GPUs come
  from the committed Alibaba fit (``workload.fits``) — or, with a jobs trace, from the
  trace's pods in order, its arrival gaps compressed to the same cumulative intensity.
  Bids, deadlines, data sizes, memory and vendor needs are drawn as the scenario says.
- Inference: one service per scenario entry, demand per city ∝ the city's weight, times
  the diurnal curve and the mix's inference multiplier (deterministic), and the requests
  that arrive in each round at that rate (``sim.arrivals``: what the estimator measures).
- Vouchers (``sim.vouchers``) and outages (``sim.outages``).

All randomness comes from one ``numpy.random.Generator`` seeded with the scenario seed,
used in a fixed order (jobs, random outages, then request arrivals), so a (scenario, seed)
is one workload.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

from suanli.catalog import load_catalog
from suanli.catalog.queries import city, model
from suanli.errors import InvalidInput
from suanli.market.demand_estimate import EstimatorParams, Observation
from suanli.market.snapshot import (
    BatchJob,
    BuyerId,
    InferenceService,
    JobId,
    ServiceId,
    VoucherProgram,
)
from suanli.sim.arrivals import draw_arrivals, observations
from suanli.sim.outages import Outage, site_outages
from suanli.sim.scenario import DiurnalSpec, MixPoint, Scenario
from suanli.sim.traces import InferenceTrace, JobsTrace
from suanli.sim.vouchers import buyer_slug, voucher_programs
from suanli.sim.world import World
from suanli.workload.fits import job_size_fit, sample_jobs_shape
from suanli.workload.inference import inference_profile

__all__ = ["ServiceDemand", "Workload", "build_workload", "diurnal_factor"]

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ServiceDemand:
    """A service's demand per city at the daily mean and its diurnal curve."""

    base_rps: Mapping[str, float]
    peak_hour: float
    amplitude: float


@dataclass(frozen=True)
class Workload:
    jobs: tuple[BatchJob, ...]  # by arrival (``submitted_at_h``)
    services: tuple[InferenceService, ...]
    demand: tuple[ServiceDemand, ...]
    vouchers: tuple[VoucherProgram, ...]
    outages: tuple[Outage, ...]
    checkpoint_every_h: float | None
    patience_h: float
    start_hour: float
    mix_days: F64
    mix_batch: F64
    mix_inference: F64
    notes: tuple[str, ...] = ()
    period_h: float = 0.25
    estimator: EstimatorParams = field(default_factory=EstimatorParams)
    arrivals: tuple[F64, ...] = ()  # per service: requests per round (rows) and city

    def inference_multiplier(self, t_h: float) -> float:
        return _interp(t_h / 24.0, self.mix_days, self.mix_inference)

    def batch_multiplier(self, t_h: float) -> float:
        return _interp(t_h / 24.0, self.mix_days, self.mix_batch)

    def demand_rps(self, k: int, t_h: float) -> dict[str, float]:
        """Requests/s per city of service ``k`` during the round that starts at ``t_h``."""
        d = self.demand[k]
        f = diurnal_factor(self.start_hour + t_h, d.peak_hour, d.amplitude)
        m = f * self.inference_multiplier(t_h)
        return {c: rps * m for c, rps in d.base_rps.items()}

    def measured(self, k: int, r: int) -> dict[str, Observation] | None:
        """What the gateways of service ``k`` measured over round ``r``, per city; None
        when no arrivals were drawn for it."""
        if k >= len(self.arrivals) or not 0 <= r < len(self.arrivals[k]):
            return None
        return observations(self.services[k], self.arrivals[k][r], self.period_h)


def diurnal_factor(clock_h: float, peak_hour: float, amplitude: float) -> float:
    """1 + a·cos(2π(h − peak)/24): mean 1 over a day, peak 1 + a, trough 1 − a."""
    return 1.0 + amplitude * math.cos(2.0 * math.pi * ((clock_h - peak_hour) % 24.0) / 24.0)


def _amplitude(d: DiurnalSpec) -> float:
    return (d.peak_to_trough - 1.0) / (d.peak_to_trough + 1.0)


def _interp(x: float, xs: F64, ys: F64) -> float:
    return float(np.interp(x, xs, ys)) if len(xs) else 1.0


def build_workload(
    scenario: Scenario,
    world: World,
    *,
    seed: int | None = None,
    days: float | None = None,
    inference_trace: InferenceTrace | None = None,
    jobs_trace: JobsTrace | None = None,
) -> Workload:
    """Draw the run's workload; the same inputs always give the same workload."""
    rng = np.random.default_rng(scenario.seed if seed is None else seed)
    horizon_h = (scenario.days if days is None else days) * 24.0
    period_h = scenario.market.period_min / 60.0
    mix = _mix_arrays(scenario.mix)
    notes: list[str] = []
    jobs = _jobs(scenario, world, rng, horizon_h, period_h, mix, jobs_trace, notes)
    services, demand = _services(scenario, world, inference_trace, notes)
    vouchers = voucher_programs(scenario, horizon_h)
    outages = site_outages(scenario, world, rng, horizon_h)
    workload = Workload(
        jobs=jobs,
        services=services,
        demand=demand,
        vouchers=vouchers,
        outages=outages,
        checkpoint_every_h=scenario.batch.checkpoint_every_h,
        patience_h=scenario.batch.patience_h,
        start_hour=scenario.start_hour,
        mix_days=mix[0],
        mix_batch=mix[1],
        mix_inference=mix[2],
        notes=tuple(notes),
        period_h=period_h,
        estimator=scenario.inference.estimator.params(),
    )
    arrivals = draw_arrivals(services, workload.demand_rps, horizon_h, period_h, rng)
    return replace(workload, arrivals=arrivals)


def _mix_arrays(points: Sequence[MixPoint]) -> tuple[F64, F64, F64]:
    return (
        np.array([p.day for p in points], dtype=np.float64),
        np.array([p.batch for p in points], dtype=np.float64),
        np.array([p.inference for p in points], dtype=np.float64),
    )


def _arrival_times(
    rate_per_h: float,
    horizon_h: float,
    period_h: float,
    mix: tuple[F64, F64, F64],
    rng: np.random.Generator,
    trace: JobsTrace | None,
) -> F64:
    """Arrival hours in [0, horizon): Poisson, or the trace's gaps, on the mix's intensity."""
    edges = np.arange(0.0, horizon_h + period_h, period_h)
    edges[-1] = horizon_h
    mids = (edges[:-1] + edges[1:]) / 2.0
    mult = np.interp(mids / 24.0, mix[0], mix[1]) if len(mix[0]) else np.ones(len(mids))
    cum = np.concatenate([[0.0], np.cumsum(rate_per_h * mult * np.diff(edges))])
    total = float(cum[-1])
    if total <= 0:
        return np.zeros(0)
    if trace is None:
        points = np.sort(rng.uniform(0.0, total, size=int(rng.poisson(total))))
    else:
        # The trace's arrivals on a count scale (first at 0, last at N − 1), repeated every N
        # so a replayed trace keeps its mean rate and its gaps.
        n = len(trace.arrival_s)
        span = float(trace.arrival_s[-1])
        unit = trace.arrival_s / span * (n - 1) if span > 0 else np.arange(n, dtype=np.float64)
        reps = math.ceil(total / n) + 1
        points = np.concatenate([unit + r * n for r in range(reps)])
        points = points[points < total]
    # Strictly inside the horizon: time is monotone in the cumulative intensity.
    times: F64 = np.minimum(np.interp(points, cum, edges), np.nextafter(horizon_h, 0.0))
    return times


def _jobs(
    scenario: Scenario,
    world: World,
    rng: np.random.Generator,
    horizon_h: float,
    period_h: float,
    mix: tuple[F64, F64, F64],
    trace: JobsTrace | None,
    notes: list[str],
) -> tuple[BatchJob, ...]:
    b = scenario.batch
    times = _arrival_times(b.jobs_per_hour, horizon_h, period_h, mix, rng, trace)
    n = len(times)
    if trace is None:
        gpus, hours = sample_jobs_shape(job_size_fit(), rng, n)
    else:
        idx = np.arange(n) % len(trace.gpus)
        gpus, hours = trace.gpus[idx], trace.duration_s[idx] / 3600.0
        notes.append(
            f"batch jobs replayed from {trace.source} ({len(trace.gpus)} GPU pods, cycled), "
            f"arrival gaps compressed to {b.jobs_per_hour:g} jobs/h"
        )
    hours = np.clip(hours, 1.0 / 60.0, b.max_run_h)
    cities = list(world.ctx.cities.values())
    weights = np.array([c.demand_weight for c in cities], dtype=np.float64)
    origin = rng.choice(len(cities), size=n, p=weights / weights.sum())
    buyer_no = rng.integers(0, b.buyers_per_city, size=n)
    bids = np.exp(rng.normal(math.log(b.bid_median_cny_per_ref_gpu_hour), b.bid_log_sigma, n))
    has_deadline = rng.random(n) < b.deadline_share
    slack = rng.uniform(b.deadline_slack[0], b.deadline_slack[1], size=n)
    data_gb = np.exp(rng.uniform(0.0, math.log(b.data_gb_max), size=n))
    needs_80 = rng.random(n) < b.needs_80gb_share
    nvidia_only = rng.random(n) < b.nvidia_only_share
    nvidia = frozenset(
        name for name, a in world.ctx.accelerators.items() if a.vendor.value == "nvidia"
    )
    slugs = [buyer_slug(c.name) for c in cities]
    return tuple(
        BatchJob(
            id=JobId(f"j{i:06d}"),
            buyer=BuyerId(f"{slugs[origin[i]]}-{int(buyer_no[i]):02d}"),
            gpus=int(gpus[i]),
            work_ref_gpu_hours=float(gpus[i] * hours[i]),
            bid_cny_per_ref_gpu_hour=round(float(bids[i]), 2),
            origin_city=cities[origin[i]].name,
            deadline_h=float(hours[i] * slack[i] + 1.0) if has_deadline[i] else None,
            data_gb=round(float(data_gb[i]), 1),
            min_mem_gb=80.0 if needs_80[i] else 0.0,
            allowed_gpus=nvidia if nvidia_only[i] else None,
            submitted_at_h=float(times[i]),
        )
        for i in range(n)
    )


def _services(
    scenario: Scenario, world: World, trace: InferenceTrace | None, notes: list[str]
) -> tuple[tuple[InferenceService, ...], tuple[ServiceDemand, ...]]:
    cat = load_catalog()
    by_weight = sorted(world.ctx.cities.values(), key=lambda c: (-c.demand_weight, c.name))
    services: list[InferenceService] = []
    demand: list[ServiceDemand] = []
    if trace is not None and scenario.inference.services:
        notes.append(
            f"token profile of every service from {trace.source}: "
            f"{trace.prompt_tokens.mean():.0f} prompt + {trace.output_tokens.mean():.0f} "
            f"output tokens per request ({len(trace.arrival_s)} requests)"
        )
    for i, s in enumerate(scenario.inference.services):
        where = f"inference.services.{i} ({s.id})"
        try:
            chosen = (
                by_weight[: s.cities]
                if isinstance(s.cities, int)
                else [city(cat, c) for c in s.cities]
            )
            llm = model(cat, s.model)
            prof = inference_profile(s.profile) if s.profile is not None else None
        except InvalidInput as exc:
            raise InvalidInput(f"{where}: {exc}") from None
        total_w = sum(c.demand_weight for c in chosen)
        base = {c.name: s.mean_rps * c.demand_weight / total_w for c in chosen}
        prompt = s.prompt_tokens or (prof.prompt_tokens_mean if prof else 0.0)
        output = s.output_tokens or (prof.output_tokens_mean if prof else 0.0)
        if trace is not None:
            prompt = float(trace.prompt_tokens.mean())
            output = float(max(trace.output_tokens.mean(), 1.0))
        services.append(
            InferenceService(
                id=ServiceId(s.id),
                buyer=BuyerId(s.buyer or f"svc-{s.id}"),
                model=llm.name,
                demand_rps=base,
                prompt_tokens=prompt,
                output_tokens=output,
                ttft_ms=s.ttft_ms,
                tpot_ms=s.tpot_ms,
                bid_cny_per_m_output_tokens=s.bid_cny_per_m_output_tokens,
                bid_cny_per_m_input_tokens=s.bid_cny_per_m_input_tokens,
                bid_cny_per_m_cached_input_tokens=s.bid_cny_per_m_cached_input_tokens,
                cached_fraction=s.cached_fraction,
                min_replicas=s.min_replicas,
                max_replicas=s.max_replicas,
                submitted_at_h=0.0,
            )
        )
        d = s.diurnal or scenario.inference.diurnal
        demand.append(ServiceDemand(base_rps=base, peak_hour=d.peak_hour, amplitude=_amplitude(d)))
    return tuple(services), tuple(demand)
