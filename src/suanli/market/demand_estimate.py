"""Planned demand from measured demand: the estimator the exchange runs on gateways'
reports and the simulator runs on simulated arrivals, so planned and live agree.

Per service × city, gateways measure requests and tokens over short windows. The
estimate is an exponentially weighted moving average of the request rate (half-life
``half_life_s``; a gap with no report counts as no traffic) and of the token mix per
request. The demand the clearing plans for is the estimate times ``headroom``; it rises
at once when the estimate does, and falls (with hysteresis) only after the estimate has
stayed below ``down_band`` of the plan for ``down_after_s``, so replicas are not stopped
and started on every dip. A city nobody has measured yet is planned at what the owner
declared: the declaration is the starting point, measurements take over.

Pure: times are seconds on the caller's clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

__all__ = [
    "CityEstimate",
    "EstimatorParams",
    "Observation",
    "observe",
    "plan_city",
    "plan_service",
    "token_mix",
]


@dataclass(frozen=True, slots=True)
class EstimatorParams:
    half_life_s: float = 300.0
    headroom: float = 1.2
    down_band: float = 0.75
    down_after_s: float = 900.0


@dataclass(frozen=True, slots=True)
class Observation:
    """What was measured for one service × city over ``window_s`` (totals)."""

    window_s: float
    requests: float
    prompt_tokens: float = 0.0
    cached_tokens: float = 0.0
    output_tokens: float = 0.0


@dataclass(frozen=True, slots=True)
class CityEstimate:
    """Smoothed demand of one service in one city and the demand planned for it."""

    rps: float
    prompt_tokens: float  # per request
    cached_fraction: float  # of prompt tokens
    output_tokens: float  # per request
    planned_rps: float
    low_since_s: float | None
    updated_s: float


def _decayed(rps: float, since_s: float, now_s: float, p: EstimatorParams) -> float:
    gap = max(0.0, now_s - since_s)
    return rps * 0.5 ** (gap / p.half_life_s) if gap > 0 else rps


def observe(
    prev: CityEstimate | None, obs: Observation, now_s: float, p: EstimatorParams
) -> CityEstimate:
    """The estimate after a window ending at ``now_s``."""
    window = max(obs.window_s, 1e-9)
    rate = max(obs.requests, 0.0) / window
    per_req = max(obs.requests, 1e-12)
    prompt = obs.prompt_tokens / per_req if obs.requests > 0 else 0.0
    cached = obs.cached_tokens / obs.prompt_tokens if obs.prompt_tokens > 0 else 0.0
    output = obs.output_tokens / per_req if obs.requests > 0 else 0.0
    if prev is None:
        return CityEstimate(rate, prompt, cached, output, 0.0, None, now_s)
    alpha = 1.0 - 0.5 ** (window / p.half_life_s)
    base = _decayed(prev.rps, prev.updated_s, now_s - window, p)
    mix = alpha if obs.requests > 0 else 0.0
    if prev.prompt_tokens == 0 and prev.output_tokens == 0:
        mix = 1.0 if obs.requests > 0 else 0.0
    return replace(
        prev,
        rps=(1.0 - alpha) * base + alpha * rate,
        prompt_tokens=(1.0 - mix) * prev.prompt_tokens + mix * prompt,
        cached_fraction=(1.0 - mix) * prev.cached_fraction + mix * cached,
        output_tokens=(1.0 - mix) * prev.output_tokens + mix * output,
        updated_s=now_s,
    )


def plan_city(
    declared_rps: float, est: CityEstimate | None, now_s: float, p: EstimatorParams
) -> tuple[float, CityEstimate | None]:
    """Requests/s to plan for one city now, and the estimate carrying the plan."""
    if est is None:
        return declared_rps, None
    target = _decayed(est.rps, est.updated_s, now_s, p) * p.headroom
    planned, low_since = est.planned_rps, est.low_since_s
    if target >= planned:
        planned, low_since = target, None
    elif target < planned * p.down_band:
        low_since = now_s if low_since is None else low_since
        if now_s - low_since >= p.down_after_s:
            planned, low_since = target, None
    else:
        low_since = None
    return planned, replace(est, planned_rps=planned, low_since_s=low_since)


def plan_service(
    declared: Mapping[str, float],
    estimates: Mapping[str, CityEstimate],
    now_s: float,
    p: EstimatorParams,
) -> tuple[dict[str, float], dict[str, CityEstimate]]:
    """Planned requests/s per city (declared cities and measured ones) and the estimates
    to keep for the next round."""
    planned: dict[str, float] = {}
    kept: dict[str, CityEstimate] = {}
    for city in sorted(set(declared) | set(estimates)):
        rps, est = plan_city(declared.get(city, 0.0), estimates.get(city), now_s, p)
        planned[city] = rps
        if est is not None:
            kept[city] = est
    return planned, kept


def token_mix(estimates: Mapping[str, CityEstimate]) -> tuple[float, float, float] | None:
    """(prompt tokens, cached fraction, output tokens) per request over the cities,
    weighted by their request rates; None before anything with tokens was measured."""
    measured = [e for e in estimates.values() if e.rps > 0 and e.output_tokens > 0]
    total = sum(e.rps for e in measured)
    if total <= 0:
        return None
    prompt = sum(e.rps * e.prompt_tokens for e in measured) / total
    cached = sum(e.rps * e.prompt_tokens * e.cached_fraction for e in measured)
    output = sum(e.rps * e.output_tokens for e in measured) / total
    return prompt, (cached / total / prompt if prompt > 0 else 0.0), output
