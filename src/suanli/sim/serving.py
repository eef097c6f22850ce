"""Planned demand per round, and what the planned replicas serve of the true demand.

The market plans each round for the demand estimator's output, as the live exchange does
(``suanli.market.demand_estimate``): the requests measured over the last round update the
estimate, the plan follows it with headroom and scales down only after the hysteresis
time, and a city not measured yet is planned at the owner's declared demand.

The requests that actually come are the true rate. The gateways send all of a city's
requests to the pools the plan routed that city to, in the shares of its routes (a city
the plan left out is not served); a pool's replicas serve what is sent up to their
capacity (replicas × requests/s each), so spare replica capacity absorbs demand above
the plan and demand beyond it is turned away. Under-planning shows as unserved demand,
over-planning as idle replicas.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

from suanli.market.decision import ServiceOutcome
from suanli.market.demand_estimate import (
    CityEstimate,
    EstimatorParams,
    Observation,
    observe,
    plan_service,
)
from suanli.market.snapshot import InferenceService

__all__ = ["Planner", "Serving", "serve"]

SECONDS_PER_HOUR = 3600.0


@dataclass
class Planner:
    """The estimator's state for every service, advanced once per round."""

    params: EstimatorParams
    estimates: list[dict[str, CityEstimate]] = field(default_factory=list)

    def plan(
        self,
        k: int,
        svc: InferenceService,
        measured: Mapping[str, Observation] | None,
        t_h: float,
    ) -> dict[str, float]:
        """Requests/s per city to plan service ``k`` for at ``t_h``, after the round that
        just ended was measured (``measured``: city → Observation, None before the first)."""
        while len(self.estimates) <= k:
            self.estimates.append({})
        now_s = t_h * SECONDS_PER_HOUR
        est = self.estimates[k]
        for city, obs in (measured or {}).items():
            est[city] = observe(est.get(city), obs, now_s, self.params)
        planned, kept = plan_service(svc.demand_rps, est, now_s, self.params)
        self.estimates[k] = kept
        return planned


@dataclass(frozen=True, slots=True)
class Serving:
    """One service's routes as served this round: (pool id, requests/s within the
    replicas' capacity, within SLO), and each pool's replica capacity (requests/s)."""

    routes: list[tuple[str, float, bool]]
    capacity: dict[str, float]


def serve(outcome: ServiceOutcome, true: Mapping[str, float], ttft_slo_ms: float) -> Serving:
    """What ``outcome``'s replicas serve when ``true`` requests/s come per city instead
    of the planned ones its routes were made for."""
    capacity: dict[str, float] = defaultdict(float)
    for r in outcome.replicas:
        capacity[r.pool_id] += r.replicas * r.capacity_rps_per_replica
    routed: dict[str, float] = defaultdict(float)
    for route in outcome.routes:
        routed[route.city] += max(route.rps, 0.0)
    sent: list[tuple[str, float, bool]] = []
    offered: dict[str, float] = defaultdict(float)
    for route in outcome.routes:
        if route.rps <= 0:
            continue
        x = true.get(route.city, 0.0) * route.rps / routed[route.city]
        ok = route.rtt_ms + route.ttft_ms <= ttft_slo_ms + 1e-9
        sent.append((route.pool_id, x, ok))
        offered[route.pool_id] += x
    fill = {p: min(1.0, capacity[p] / x) if x > 0 else 1.0 for p, x in offered.items()}
    routes = [(p, x * fill[p], ok) for p, x, ok in sent]
    return Serving(routes=routes, capacity=dict(capacity))
