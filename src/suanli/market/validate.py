"""Checks a snapshot before clearing: names resolve, numbers make sense.

Raises :class:`~suanli.errors.InvalidInput` naming the item and the field; clearing
itself never raises for an expected outcome.
"""

from __future__ import annotations

import math

from suanli.errors import InvalidInput
from suanli.market.context import MarketContext
from suanli.market.snapshot import InferenceService, MarketSnapshot

__all__ = ["validate_snapshot"]


def validate_snapshot(snapshot: MarketSnapshot, ctx: MarketContext) -> None:
    ids: set[str] = set()
    for pool in snapshot.pools:
        _unique(ids, pool.id, "pool")
        _nonneg(f"pool {pool.id}", "free_gpus", pool.free_gpus)
        _positive(f"pool {pool.id}", "gpus_per_node", pool.gpus_per_node)
        _positive(f"pool {pool.id}", "speed", pool.speed)
        _nonneg(f"pool {pool.id}", "reserve_cny_per_gpu_hour", pool.reserve_cny_per_gpu_hour)
    for job in snapshot.jobs:
        where = f"job {job.id}"
        _unique(ids, job.id, "job")
        _positive(where, "gpus", job.gpus)
        _positive(where, "work_ref_gpu_hours", job.work_ref_gpu_hours)
        _nonneg(where, "bid_cny_per_ref_gpu_hour", job.bid_cny_per_ref_gpu_hour)
        _nonneg(where, "data_gb", job.data_gb)
        if job.deadline_h is not None:
            _positive(where, "deadline_h", job.deadline_h)
        if job.origin_city not in ctx.cities:
            raise InvalidInput(
                f"{where}: origin_city {job.origin_city!r} is not a known city "
                f"(see `suanli catalog cities`)"
            )
    for svc in snapshot.services:
        where = f"service {svc.id}"
        _unique(ids, svc.id, "service")
        if svc.model not in ctx.models:
            raise InvalidInput(
                f"{where}: model {svc.model!r} is not in the catalogue "
                f"(known: {', '.join(sorted(ctx.models))})"
            )
        for name in ("prompt_tokens", "output_tokens", "ttft_ms", "tpot_ms"):
            _positive(where, name, getattr(svc, name))
        _service_terms(where, svc)
        for city, rps in svc.demand_rps.items():
            if city not in ctx.cities:
                raise InvalidInput(f"{where}: demand city {city!r} is not a known city")
            _nonneg(where, f"demand_rps[{city}]", rps)
    for v in snapshot.vouchers:
        if not 0 < v.coverage < 1:
            raise InvalidInput(f"voucher {v.id}: coverage must be in (0, 1), got {v.coverage}")
        _nonneg(f"voucher {v.id}", "budget_cny", v.budget_cny)
    rules = snapshot.rules
    if not 0 <= rules.fee_rate < 1:
        raise InvalidInput(f"rules: fee_rate must be in [0, 1), got {rules.fee_rate}")
    _positive("rules", "service_horizon_h", rules.service_horizon_h)
    _positive("rules", "candidate_pools", rules.candidate_pools)


def _service_terms(where: str, svc: InferenceService) -> None:
    """Token bids, the cached share of the prompt and the replica bounds."""
    for name in (
        "bid_cny_per_m_input_tokens",
        "bid_cny_per_m_cached_input_tokens",
        "bid_cny_per_m_output_tokens",
    ):
        _nonneg(where, name, getattr(svc, name))
    h = svc.cached_fraction
    if not (isinstance(h, (int, float)) and math.isfinite(h) and 0 <= h <= 1):
        raise InvalidInput(
            f"{where}: cached_fraction is the share of prompt tokens served from the cache, "
            f"a number in [0, 1], got {h!r}"
        )
    if not (isinstance(svc.min_replicas, int) and svc.min_replicas >= 0):
        raise InvalidInput(
            f"{where}: min_replicas must be a whole number ≥ 0, got {svc.min_replicas!r}"
        )
    top = svc.max_replicas
    if top is not None and not (isinstance(top, int) and top >= max(1, svc.min_replicas)):
        raise InvalidInput(
            f"{where}: max_replicas must be a whole number ≥ max(1, min_replicas = "
            f"{svc.min_replicas}), got {top!r}"
        )


def _unique(seen: set[str], key: str, kind: str) -> None:
    if key in seen:
        raise InvalidInput(f"duplicate id {key!r} ({kind}); ids must be unique in a snapshot")
    seen.add(key)


def _positive(where: str, name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise InvalidInput(f"{where}: {name} must be a positive number, got {value!r}")


def _nonneg(where: str, name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
        raise InvalidInput(f"{where}: {name} must be a number ≥ 0, got {value!r}")
