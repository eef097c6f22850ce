"""Which replicas a request may go to, best first: the market's plan for the caller's city.

The last clearing round routed each demand city's requests to pools (``CityRoute`` with
a weight in requests/s); the exchange adds pools outside the plan that still meet the
TTFT SLO from that city (weight 0, the fallbacks). For one request:

1. the routes of the caller's city, or of ``"*"`` when the city has none;
2. in-plan pools first, least in flight per unit of weight (so concurrent load follows the
   plan's proportions); ties — the common case under light load, when nothing is in
   flight — go to the pool picked least often per unit of weight, which spreads
   sequential requests by the weights too (smooth weighted choice);
3. within a pool, its usable replicas least loaded first (in flight ÷ max concurrency);
4. then the fallback pools, nearest (lowest RTT) first;
5. last, the *last resorts*: the service's other pools (those of ``"*"`` — every pool
   with replicas — that the city's routes do not list), whose network round trip breaks
   the TTFT SLO from there. They are for failure only — when nothing the city's routes
   list can be tried — so the caller queues for a full SLO-meeting replica rather than
   spill onto them, and a request they serve never counts as meeting the SLO (the plan
   knows the round trip from the city; the gateway cannot see the client's WAN). They
   are ordered by their ``"*"`` route's RTT when known (the exchange writes 0 there: not
   known), then least loaded first.

A replica is usable unless its health is "unhealthy" or "starting" or ``excluded`` says so
(its breaker is open, or this request already tried it). A service without any routes
(no round has planned it yet) offers all its usable replicas.

Pure: the caller passes the load and the exclusions in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from suanli.gateway.protocol import CityRoute, ReplicaEntry, ServiceEntry

__all__ = ["ANY_CITY", "Candidate", "Load", "candidates", "routes_for"]

ANY_CITY = "*"
_NOT_SERVING = frozenset({"unhealthy", "starting"})


@dataclass(frozen=True, slots=True)
class Candidate:
    replica: ReplicaEntry
    rtt_ms: float
    in_plan: bool
    last_resort: bool = False  # outside the city's routes: breaks the SLO from there

    @property
    def rid(self) -> str:
        return self.replica.allocation_id


@dataclass(frozen=True, slots=True)
class Load:
    """Requests in flight per replica (allocation id), and how often each pool was
    picked since the plan last changed."""

    in_flight: Mapping[str, int]
    picks: Mapping[str, int]


def routes_for(service: ServiceEntry, city: str) -> list[CityRoute]:
    """The city's routes; ``"*"``'s for a city the state does not name. A city named with
    no routes has none: nothing meets its SLO (its requests go to last resorts)."""
    if city in service.routes:
        return service.routes[city]
    return service.routes.get(ANY_CITY) or []


def candidates(
    service: ServiceEntry, city: str, load: Load, excluded: Callable[[str], bool]
) -> list[Candidate]:
    """The replicas to try for one request from ``city``, in order (the last resorts
    at the end)."""
    by_pool: dict[str, list[ReplicaEntry]] = {}
    for r in service.replicas:
        if r.health not in _NOT_SERVING and not excluded(r.allocation_id):
            by_pool.setdefault(r.pool_id, []).append(r)
    routes = routes_for(service, city)
    if not routes:
        return [Candidate(r, 0.0, False) for r in _least_loaded(service.replicas, by_pool, load)]
    planned = [rt for rt in routes if rt.in_plan and rt.weight > 0 and rt.pool_id in by_pool]
    planned.sort(key=lambda rt: _plan_key(rt, by_pool[rt.pool_id], load))
    fallback = [rt for rt in routes if not (rt.in_plan and rt.weight > 0)]
    fallback.sort(key=lambda rt: rt.rtt_ms)
    out: list[Candidate] = []
    seen: set[str] = set()
    for rt in planned + fallback:
        pool = by_pool.get(rt.pool_id)
        if pool is None or rt.pool_id in seen:
            continue
        seen.add(rt.pool_id)
        in_plan = rt.in_plan and rt.weight > 0
        out.extend(Candidate(r, rt.rtt_ms, in_plan) for r in _sorted_by_load(pool, load))
    if len(seen) < len(by_pool):
        out.extend(_last_resorts(service, {rt.pool_id for rt in routes}, by_pool, load))
    return out


def _last_resorts(
    service: ServiceEntry, listed: set[str], by_pool: dict[str, list[ReplicaEntry]], load: Load
) -> list[Candidate]:
    """The usable replicas of the ``"*"`` pools (every pool with replicas) that the
    city's routes do not list: nearest by that route's RTT (0: not known), then least
    loaded."""
    rtt = {
        rt.pool_id: rt.rtt_ms
        for rt in service.routes.get(ANY_CITY, ())
        if rt.pool_id not in listed and rt.pool_id in by_pool
    }
    others = [r for pool in rtt for r in by_pool[pool]]
    others.sort(
        key=lambda r: (rtt[r.pool_id], load.in_flight.get(r.allocation_id, 0) / r.max_concurrency)
    )
    return [Candidate(r, rtt[r.pool_id], False, True) for r in others]


def _plan_key(rt: CityRoute, pool: list[ReplicaEntry], load: Load) -> tuple[float, float, float]:
    in_flight = sum(load.in_flight.get(r.allocation_id, 0) for r in pool)
    picked = load.picks.get(rt.pool_id, 0)
    return (in_flight / rt.weight, (picked + 1) / rt.weight, -rt.weight)


def _sorted_by_load(pool: list[ReplicaEntry], load: Load) -> list[ReplicaEntry]:
    if len(pool) == 1:
        return pool
    return sorted(pool, key=lambda r: load.in_flight.get(r.allocation_id, 0) / r.max_concurrency)


def _least_loaded(
    replicas: list[ReplicaEntry], by_pool: dict[str, list[ReplicaEntry]], load: Load
) -> list[ReplicaEntry]:
    usable = {r.allocation_id for pool in by_pool.values() for r in pool}
    return _sorted_by_load([r for r in replicas if r.allocation_id in usable], load)
