"""Measured demand: the requests that arrive in each round, as the gateways would count them.

The true demand of service k in city c during the round that starts at t is a rate
d_kc(t) (``Workload.demand_rps``: the diurnal curve). The requests that arrive in that
round are a Poisson count with mean d_kc(t) × the round's length, drawn once per
(scenario, seed) from the workload's generator, so every policy replays the same
arrivals. Their tokens follow the service's profile: its mean prompt and output tokens
per request, and ``cached_fraction`` of the prompt served from the prefix cache.

The simulator feeds these counts to :mod:`suanli.market.demand_estimate` as the live
exchange feeds its gateways' reports, and plans each round for the estimate; what is
served is then measured against the true rate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from suanli.market.demand_estimate import Observation
from suanli.market.snapshot import InferenceService

__all__ = ["draw_arrivals", "observations", "round_starts"]

F64 = npt.NDArray[np.float64]


def round_starts(horizon_h: float, period_h: float) -> F64:
    """Start of every clearing round in [0, horizon): 0, period, 2·period, …"""
    n = max(1, int(np.ceil(horizon_h / period_h - 1e-9)))
    return np.arange(n, dtype=np.float64) * period_h


def draw_arrivals(
    services: Sequence[InferenceService],
    true_rps: Callable[[int, float], dict[str, float]],
    horizon_h: float,
    period_h: float,
    rng: np.random.Generator,
) -> tuple[F64, ...]:
    """Per service, requests arriving per round (rows) and city (``demand_rps`` order)."""
    starts = round_starts(horizon_h, period_h)
    window_s = period_h * 3600.0
    out = []
    for k, svc in enumerate(services):
        cities = list(svc.demand_rps)
        mean = np.array(
            [[true_rps(k, float(t)).get(c, 0.0) * window_s for c in cities] for t in starts]
        ).reshape(len(starts), len(cities))
        out.append(rng.poisson(mean).astype(np.float64))
    return tuple(out)


def observations(svc: InferenceService, counts: F64, period_h: float) -> dict[str, Observation]:
    """What the gateways of ``svc`` measured over one round, per city, from the counts."""
    window_s = period_h * 3600.0
    out = {}
    for city, n in zip(svc.demand_rps, counts.tolist(), strict=True):
        prompt = n * svc.prompt_tokens
        out[city] = Observation(
            window_s=window_s,
            requests=n,
            prompt_tokens=prompt,
            cached_tokens=prompt * svc.cached_fraction,
            output_tokens=n * svc.output_tokens,
        )
    return out
