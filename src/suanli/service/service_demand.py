"""A service's demand and token profile as the exchange plans for it: the owner's
declaration, overtaken city by city by what gateways measured.

The measured estimates live on the service's row (``demand_estimates``: city → the fields
of :class:`~suanli.market.demand_estimate.CityEstimate`), folded in by gateway reports
(:mod:`suanli.service.gateway_reports`) and re-planned by every clearing round
(:mod:`suanli.service.round_plan`). Everything that sizes a replica (the round, the
gateway state's concurrency) reads the token profile from :func:`service_tokens`, so the
clearing and the gateways agree on what one request costs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from suanli.market.demand_estimate import CityEstimate, EstimatorParams, plan_service, token_mix
from suanli.service.tables import ServiceRow

__all__ = [
    "PARAMS",
    "DemandPlan",
    "dump_estimates",
    "load_estimates",
    "measured_rps",
    "plan_demand",
    "seconds",
    "service_tokens",
]

# The estimator's defaults (the simulator's); the exchange uses its settings'
# (``ServiceSettings.estimator``) for both the reports and the rounds.
PARAMS = EstimatorParams()


@dataclass(frozen=True)
class DemandPlan:
    """What a round plans for one service: requests/s per city, the estimates carrying
    the plan and its hysteresis state, and the token profile per request."""

    planned: dict[str, float]
    estimates: dict[str, CityEstimate]
    prompt_tokens: float
    cached_fraction: float
    output_tokens: float


def seconds(at: datetime) -> float:
    """The estimator's clock: seconds since the Unix epoch."""
    return at.timestamp()


def _number(raw: Mapping[str, Any], key: str, default: float = 0.0) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return default
    return float(value)


def load_estimates(raw: Mapping[str, Any] | None) -> dict[str, CityEstimate]:
    """The row's JSON → estimates; malformed entries are dropped (a bad row must never
    stop a clearing round)."""
    out: dict[str, CityEstimate] = {}
    for city, fields in (raw or {}).items():
        if not isinstance(fields, Mapping):
            continue
        low = fields.get("low_since_s")
        out[city] = CityEstimate(
            rps=max(0.0, _number(fields, "rps")),
            prompt_tokens=max(0.0, _number(fields, "prompt_tokens")),
            cached_fraction=min(max(_number(fields, "cached_fraction"), 0.0), 1.0),
            output_tokens=max(0.0, _number(fields, "output_tokens")),
            planned_rps=max(0.0, _number(fields, "planned_rps")),
            low_since_s=_number(fields, "low_since_s") if low is not None else None,
            updated_s=_number(fields, "updated_s"),
        )
    return out


def dump_estimates(estimates: Mapping[str, CityEstimate]) -> dict[str, Any]:
    return {city: asdict(est) for city, est in sorted(estimates.items())}


def measured_rps(row: ServiceRow) -> dict[str, float]:
    """City → smoothed measured requests/s (as of the last report)."""
    return {c: e.rps for c, e in load_estimates(row.demand_estimates).items()}


def _profile(row: ServiceRow, estimates: Mapping[str, CityEstimate]) -> tuple[float, float, float]:
    mix = token_mix(estimates)
    if mix is None:
        return row.prompt_tokens, row.cached_fraction, row.output_tokens
    prompt, cached, output = mix
    # The perf model needs positive token counts: a component nobody measured stays
    # as the owner declared it.
    return (
        prompt if prompt > 0 else row.prompt_tokens,
        min(max(cached, 0.0), 1.0) if prompt > 0 else row.cached_fraction,
        output if output > 0 else row.output_tokens,
    )


def service_tokens(row: ServiceRow) -> tuple[float, float, float]:
    """(prompt tokens, cached fraction, output tokens) per request: measured when
    gateways have measured any, else declared."""
    return _profile(row, load_estimates(row.demand_estimates))


def plan_demand(row: ServiceRow, now_s: float, params: EstimatorParams = PARAMS) -> DemandPlan:
    """The demand to plan for now: declared cities at their declaration until measured,
    measured ones at the estimate with headroom (down only after the hysteresis)."""
    estimates = load_estimates(row.demand_estimates)
    planned, kept = plan_service(
        {c: float(r) for c, r in row.demand_rps.items()}, estimates, now_s, params
    )
    prompt, cached, output = _profile(row, estimates)
    return DemandPlan(planned, kept, prompt, cached, output)
