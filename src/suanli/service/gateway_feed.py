"""The routing state inference gateways serve from, built from the rows in a handful of
queries, and the long-poll that hands it out.

What is in it (see :mod:`suanli.gateway.protocol`):

- every active service, with its model, SLO and the server-side TTFT the perf model
  expects; a service without a running replica is listed with none (its keys stay valid:
  a gateway answers "no replica" rather than "unknown key");
- its replicas: allocations of kind ``replica`` that are active and reported an
  endpoint, with the site's city, the agent-reported health and the in-flight requests
  the perf model admits (its batch at the service's token profile and SLO). A replica
  whose placement ended is gone from the state at once — it is draining: a replica the
  round did not place again is parked by its agent for ``handover_s`` before it is
  stopped. The one exception is a placement that reached its billing horizon and is
  being taken over by the service's next placement on the same pool (same process, same
  endpoint): it stays listed until that placement reports running, so a horizon never
  leaves a service without replicas;
- routes per demand city of the catalogue: the last round's routes (weight = requests/s
  routed), then the other pools with replicas that still meet the TTFT SLO from that city
  (network RTT + server TTFT), nearest first, weight 0; and ``"*"``: every pool with
  replicas, weighted by all the requests/s routed to it;
- the services' live inference keys, with the tokens each used since 00:00 UTC.

``etag`` is the SHA-256 of the canonical JSON of everything but ``generated_at``: the
same rows give the same etag in any process.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import anyio
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from suanli.gateway.protocol import CityRoute, GatewayState, KeyEntry, ReplicaEntry, ServiceEntry
from suanli.latency.model import rtt_matrix_for
from suanli.market.context import MarketContext
from suanli.market.sizing import replica_spec
from suanli.perf.capacity import LatencySLO, TokenProfile, replica_capacity
from suanli.service.market_view import site_value
from suanli.service.runtime import Runtime
from suanli.service.service_demand import service_tokens
from suanli.service.tables import (
    AllocationRow,
    InferenceKey,
    PoolRow,
    ServiceRoute,
    ServiceRow,
    SiteRow,
    TokenUsage,
)

__all__ = ["ANY_CITY", "RECHECK_S", "build_state", "poll_state", "read_state"]

ANY_CITY = "*"
# A long-poll re-reads the state at least this often (changes made by other processes
# wake no one here) and looks at the change counter this often in between.
RECHECK_S = 1.0
_TICK_S = 0.05
# How long after a horizon a running replica may stand in for the placement taking it
# over (the agent hands it over within a lease interval; it stops it after handover_s).
BRIDGE_S = 60.0


@dataclass(frozen=True)
class _Replica:
    alloc: AllocationRow
    gpu: str
    site: SiteRow


def read_state(rt: Runtime) -> GatewayState:
    """The state now, in its own read transaction (call it from a worker thread)."""
    with rt.db.read() as session:
        return build_state(session, rt.ctx, rt.clock.now())


async def poll_state(rt: Runtime, etag: str | None, wait_s: float) -> GatewayState:
    """The state, at once if ``etag`` is absent or stale; else as soon as it differs
    from ``etag``, or when ``wait_s`` has passed. Waiting holds no thread: the change
    counter is watched from the event loop, the state re-read in a worker thread when it
    moves and every :data:`RECHECK_S`."""
    seen = rt.serving_changes.count
    state = await anyio.to_thread.run_sync(read_state, rt)
    deadline = time.monotonic() + max(0.0, wait_s)
    while etag is not None and state.etag == etag and time.monotonic() < deadline:
        recheck = min(deadline, time.monotonic() + RECHECK_S)
        while rt.serving_changes.count == seen and time.monotonic() < recheck:
            await anyio.sleep(min(_TICK_S, max(0.0, recheck - time.monotonic())))
        seen = rt.serving_changes.count
        state = await anyio.to_thread.run_sync(read_state, rt)
    return state


def build_state(session: Session, ctx: MarketContext, now: datetime) -> GatewayState:
    services = list(
        session.scalars(
            select(ServiceRow).where(ServiceRow.state == "active").order_by(ServiceRow.id)
        )
    )
    ids = [s.id for s in services]
    replicas = _replicas(session, ids, now)
    routes = _routes(session, ids)
    sites = {r.site.id: r.site for rs in replicas.values() for r in rs}
    rtt = _rtt(ctx, sites.values())
    entries = [
        _service_entry(svc, replicas.get(svc.id, []), routes.get(svc.id, []), ctx, rtt)
        for svc in services
    ]
    round_ids = [r.round_id for rs in routes.values() for r in rs if r.round_id is not None]
    state = GatewayState(
        etag="",
        generated_at=now,
        round_id=max(round_ids, default=None),
        services=entries,
        keys=_keys(session, ids, now),
    )
    return state.model_copy(update={"etag": state_etag(state)})


def state_etag(state: GatewayState) -> str:
    content = state.model_dump(mode="json", exclude={"etag", "generated_at"})
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


# ----- reading the rows -------------------------------------------------------------------
def _replica_rows(session: Session, *where: ColumnElement[bool]) -> list[_Replica]:
    q = (
        select(AllocationRow, PoolRow.gpu, SiteRow)
        .join(PoolRow, PoolRow.id == AllocationRow.pool_id)
        .join(SiteRow, SiteRow.id == PoolRow.site_id)
        .where(AllocationRow.kind == "replica", *where)
        .order_by(AllocationRow.id)
    )
    return [_Replica(a, gpu, site) for a, gpu, site in session.execute(q)]


def _replicas(session: Session, ids: Sequence[str], now: datetime) -> dict[str, list[_Replica]]:
    """Service → replicas to route to: active ones with an endpoint, and the previous
    placements still running for the active ones not started yet (handovers)."""
    if not ids:
        return {}
    active = _replica_rows(session, AllocationRow.active.is_(True), AllocationRow.item_id.in_(ids))
    out: dict[str, list[_Replica]] = defaultdict(list)
    for r in active:
        if r.alloc.endpoint:
            out[r.alloc.item_id].append(r)
    for r in _handed_over(session, active, now):
        out[r.alloc.item_id].append(r)
    return {k: sorted(v, key=lambda r: r.alloc.id) for k, v in out.items()}


def _handed_over(session: Session, active: Sequence[_Replica], now: datetime) -> list[_Replica]:
    """Previous placements standing in for new ones at a billing horizon: per service,
    pool and size, as many of the ones released when the new ones were placed as there
    are new ones without an endpoint yet, in id order (as leases pair them), skipping
    those whose endpoint a new placement already took over."""
    waiting: dict[tuple[str, str, int, datetime | None], int] = defaultdict(int)
    taken: set[tuple[str, str]] = set()
    for r in active:
        a = r.alloc
        if a.endpoint:
            taken.add((a.item_id, a.endpoint))
        elif a.started_at is None and a.placed_at >= now - timedelta(seconds=BRIDGE_S):
            waiting[(a.item_id, a.pool_id, a.gpus, a.placed_at)] += 1
    if not waiting:
        return []
    earlier = _replica_rows(
        session,
        AllocationRow.active.is_(False),
        AllocationRow.started_at.is_not(None),
        AllocationRow.endpoint.is_not(None),
        AllocationRow.item_id.in_(sorted({k[0] for k in waiting})),
        AllocationRow.released_at.in_(sorted({k[3] for k in waiting if k[3] is not None})),
    )
    out: list[_Replica] = []
    for r in earlier:
        a = r.alloc
        key = (a.item_id, a.pool_id, a.gpus, a.released_at)
        if waiting.get(key, 0) > 0 and (a.item_id, a.endpoint) not in taken:
            waiting[key] -= 1
            out.append(r)
    return out


def _routes(session: Session, ids: Sequence[str]) -> dict[str, list[ServiceRoute]]:
    out: dict[str, list[ServiceRoute]] = defaultdict(list)
    if ids:
        for r in session.scalars(
            select(ServiceRoute)
            .where(ServiceRoute.service_id.in_(ids))
            .order_by(ServiceRoute.service_id, ServiceRoute.city, ServiceRoute.pool_id)
        ):
            out[r.service_id].append(r)
    return out


def _keys(session: Session, ids: Sequence[str], now: datetime) -> list[KeyEntry]:
    if not ids:
        return []
    keys = list(
        session.scalars(
            select(InferenceKey)
            .where(InferenceKey.service_id.in_(ids), InferenceKey.revoked_at.is_(None))
            .order_by(InferenceKey.id)
        )
    )
    used: dict[str, int] = {}
    if keys:
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        tokens = TokenUsage.input_tokens + TokenUsage.cached_input_tokens + TokenUsage.output_tokens
        used = {
            key_id: int(n or 0)
            for key_id, n in session.execute(
                select(TokenUsage.key_id, func.sum(tokens))
                .where(
                    TokenUsage.key_id.in_([k.id for k in keys]),
                    TokenUsage.window_end >= midnight,
                )
                .group_by(TokenUsage.key_id)
            )
        }
    return [
        KeyEntry(
            id=k.id,
            digest=k.key_hash,
            service_id=k.service_id,
            rpm=k.rpm,
            tokens_per_day=k.tokens_per_day,
            tokens_today=used.get(k.id, 0),
        )
        for k in keys
    ]


# ----- one service ------------------------------------------------------------------------
def _rtt(ctx: MarketContext, sites: Iterable[SiteRow]) -> dict[tuple[str, str], float]:
    """(demand city, site id) → modelled (or measured) round trip, as the clearing sees it."""
    rows = sorted(sites, key=lambda s: s.id)
    if not rows:
        return {}
    cities = list(ctx.cities.values())
    matrix = rtt_matrix_for(cities, [site_value(s) for s in rows], ctx.latency)
    return {
        (c.name, s.id): round(float(matrix[i, j]), 3)
        for i, c in enumerate(cities)
        for j, s in enumerate(rows)
    }


@dataclass(frozen=True)
class _Sizing:
    batch: int
    server_ttft_ms: float


def _sizing(svc: ServiceRow, gpu_name: str, ctx: MarketContext) -> _Sizing:
    """What the perf model says of one replica of ``svc`` on ``gpu_name`` now."""
    model, gpu = ctx.models.get(svc.model), ctx.accelerators.get(gpu_name)
    if model is None or gpu is None:
        return _Sizing(1, math.inf)
    prompt, _, output = service_tokens(svc)
    cap = replica_capacity(
        model, gpu, TokenProfile(prompt, output), LatencySLO(svc.ttft_ms, svc.tpot_ms)
    )
    spec = replica_spec(model, gpu, prompt, output, svc.ttft_ms, svc.tpot_ms)
    return _Sizing(max(1, cap.batch), spec.ttft_ms)


def _service_entry(
    svc: ServiceRow,
    replicas: Sequence[_Replica],
    routes: Sequence[ServiceRoute],
    ctx: MarketContext,
    rtt: Mapping[tuple[str, str], float],
) -> ServiceEntry:
    sizing = {gpu: _sizing(svc, gpu, ctx) for gpu in sorted({r.gpu for r in replicas})}
    health_path = str((svc.run_spec or {}).get("health_path") or "/health")
    entries = [
        ReplicaEntry(
            allocation_id=r.alloc.id,
            pool_id=r.alloc.pool_id,
            site_id=r.site.id,
            city=r.site.city or None,
            endpoint=str(r.alloc.endpoint),
            health=r.alloc.health,
            max_concurrency=sizing[r.gpu].batch,
            health_path=health_path,
        )
        for r in replicas
    ]
    server_ttft = {r.alloc.pool_id: sizing[r.gpu].server_ttft_ms for r in replicas}
    finite = [t for t in server_ttft.values() if math.isfinite(t)]
    return ServiceEntry(
        id=svc.id,
        name=svc.name,
        tenant_id=svc.tenant_id,
        model=svc.model,
        ttft_ms=svc.ttft_ms,
        tpot_ms=svc.tpot_ms,
        server_ttft_ms=round(max(finite, default=0.0), 3),
        replicas=entries,
        routes=_city_routes(svc, replicas, routes, ctx, rtt, server_ttft),
    )


def _city_routes(
    svc: ServiceRow,
    replicas: Sequence[_Replica],
    routes: Sequence[ServiceRoute],
    ctx: MarketContext,
    rtt: Mapping[tuple[str, str], float],
    server_ttft: Mapping[str, float],
) -> dict[str, list[CityRoute]]:
    """Demand city → routes: the round's (heaviest first), then the other pools with
    replicas that meet the TTFT SLO from there (nearest first) — every catalogue city,
    with an empty list where none does; ``"*"``: every pool."""
    site_of = {r.alloc.pool_id: r.site.id for r in replicas}
    if not site_of:
        return {}
    planned: dict[str, dict[str, tuple[float, float]]] = defaultdict(dict)
    for r in routes:
        if r.pool_id in site_of:
            rps, _ = planned[r.city].get(r.pool_id, (0.0, r.rtt_ms))
            planned[r.city][r.pool_id] = (rps + r.rps, r.rtt_ms)
    out: dict[str, list[CityRoute]] = {}
    for city in ctx.cities:
        plan = planned.get(city, {})
        first = [
            CityRoute(pool_id=p, weight=max(0.0, w), rtt_ms=max(0.0, t), in_plan=True)
            for p, (w, t) in sorted(plan.items(), key=lambda kv: (-kv[1][0], kv[0]))
        ]
        fallback = sorted(
            (rtt.get((city, site), math.inf), pool)
            for pool, site in site_of.items()
            if pool not in plan
        )
        rest = [
            CityRoute(pool_id=pool, weight=0.0, rtt_ms=t, in_plan=False)
            for t, pool in fallback
            if t + server_ttft.get(pool, math.inf) <= svc.ttft_ms
        ]
        out[city] = first + rest  # empty: nothing meets the SLO there (gateways then
        # answer from another replica as a last resort, counted as missing the SLO)
    total: dict[str, float] = defaultdict(float)
    for plan in planned.values():
        for pool, (w, _) in plan.items():
            total[pool] += w
    out[ANY_CITY] = [
        CityRoute(pool_id=p, weight=max(0.0, total.get(p, 0.0)), rtt_ms=0.0, in_plan=p in total)
        for p in sorted(site_of, key=lambda p: (-total.get(p, 0.0), p))
    ]
    if not out[ANY_CITY]:
        del out[ANY_CITY]
    return out
