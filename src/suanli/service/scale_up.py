"""Mid-horizon scale-ups of running inference services (planning side).

A service with live replicas whose planned demand exceeds what those replicas were
routed enters a clearing round for its residual demand only, with its replica bounds
reduced by the live replicas (see :mod:`suanli.service.round_plan`). This module holds:

- :class:`ScaleUp`, the record of such an entry (live replicas, the routes they keep,
  the demand they cover), and :data:`SCALE_UP`, the prefix of its reasons;
- :func:`scale_ups`: which busy services enter, with what residual demand and bounds;
- :func:`_routed_live`: which of a service's routes still count, and for how much;
- the reasons of scale-ups the round could not place, or that no longer need one.

The rows a scale-up writes (its replicas beside the live ones, its added routes) are
written by :mod:`suanli.service.round_write` and :mod:`suanli.service.route_rows`.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from sqlalchemy import select
from sqlalchemy.orm import Session

from suanli.market.sizing import replica_spec
from suanli.market.snapshot import InferenceService
from suanli.service.market_view import MarketView
from suanli.service.runtime import Runtime
from suanli.service.tables import AllocationRow, ServiceRoute, ServiceRow

__all__ = [
    "SCALE_UP",
    "SCALE_UP_MIN_SHARE",
    "ScaleUp",
    "mark_scale_up_notes",
    "note_held_scale_ups",
    "scale_up_reasons",
    "scale_ups",
]

# A busy service enters a round for its residual demand only when that is at least this
# share of one replica on the best pool: smaller gaps would add a replica for noise.
SCALE_UP_MIN_SHARE = 0.05
# Reasons about a scale-up start with this: the service is served by its live replicas,
# these say why more could not be added (a later covered round drops them again).
SCALE_UP = "scale-up"


@dataclass(frozen=True)
class ScaleUp:
    """A service with live replicas that enters the round for its residual demand.

    ``kept_routes`` (route id → requests/s) are the routes of its live replicas, at most
    what those serve: the routes the service keeps when the new ones are added.
    ``covered_rps`` is the planned demand the live replicas serve."""

    live_replicas: int
    kept_routes: Mapping[int, float]
    covered_rps: float
    planned_rps: float


_Entry = tuple[ScaleUp, InferenceService]


def scale_ups(
    session: Session,
    rt: Runtime,
    busy: Sequence[InferenceService],
    view: MarketView,
) -> tuple[dict[str, _Entry], dict[str, ScaleUp | None]]:
    """The services with live replicas (``busy``, as the engine sees them whole) whose
    planned demand exceeds what those replicas were routed, each as the engine sees its
    residual (see :func:`_scale_up`); and the others: None where their live replicas
    cover the plan, their :class:`ScaleUp` where all their ``max_replicas`` are live
    already."""
    if not busy:
        return {}, {}
    routes: dict[str, list[ServiceRoute]] = defaultdict(list)
    for r in session.scalars(
        select(ServiceRoute)
        .where(ServiceRoute.service_id.in_([s.id for s in busy]))
        .order_by(ServiceRoute.id)
    ):
        routes[r.service_id].append(r)
    live: dict[str, list[AllocationRow]] = defaultdict(list)
    for a in view.active:
        if a.kind == "replica":
            live[a.item_id].append(a)
    gpu_of: dict[str, str] = {p.id: p.gpu for p in view.pools}
    entered: dict[str, _Entry] = {}
    held: dict[str, ScaleUp | None] = {}
    for svc in busy:
        rps_of = _replica_rps(rt, svc)
        found = _scale_up(svc, live[svc.id], routes[svc.id], gpu_of, rps_of)
        if found is not None and found[1] is not None:
            entered[svc.id] = (found[0], found[1])
        else:
            held[svc.id] = None if found is None else found[0]
    return entered, held


def _scale_up(
    svc: InferenceService,
    live: Sequence[AllocationRow],
    routes: Sequence[ServiceRoute],
    gpu_of: Mapping[str, str],
    rps_of: Callable[[str], float],
) -> tuple[ScaleUp, InferenceService | None] | None:
    """``svc`` reduced to what its live replicas leave: per city, the planned requests/s
    less those its live replicas were routed (see :func:`_routed_live`); its bounds less
    the live replicas. Its live replicas' spare capacity is not counted: their routes say
    what gateways send them until the horizon re-plans the service whole.

    None when nothing is to be added: the residual is below :data:`SCALE_UP_MIN_SHARE` of
    one replica on the best pool (and no ``min_replicas`` are missing); the service
    without one when there is, but all its ``max_replicas`` are live."""
    best = max((rps_of(g) for g in set(gpu_of.values()) if _allowed(svc, g)), default=0.0)
    kept = _routed_live(routes, live, lambda pool: rps_of(gpu_of[pool]))
    routed: dict[str, float] = defaultdict(float)
    for r in routes:
        routed[r.city] += kept.get(r.id, 0.0)
    residual = {
        c: rps - routed.get(c, 0.0) for c, rps in svc.demand_rps.items() if rps > routed.get(c, 0.0)
    }
    need = max(0, svc.min_replicas - len(live))
    if best <= 0 or (need == 0 and sum(residual.values()) < SCALE_UP_MIN_SHARE * best):
        return None
    up = ScaleUp(
        live_replicas=len(live),
        kept_routes=kept,
        covered_rps=sum(min(rps, routed.get(c, 0.0)) for c, rps in svc.demand_rps.items()),
        planned_rps=sum(svc.demand_rps.values()),
    )
    top = None if svc.max_replicas is None else svc.max_replicas - len(live)
    if top is not None and top <= 0:
        return up, None
    if not residual:  # only missing min_replicas: anchored on the largest city
        anchor = min(svc.demand_rps, key=lambda c: (-svc.demand_rps[c], c), default=None)
        if anchor is None:
            return None
        residual = {anchor: 0.0}
    return up, replace(svc, demand_rps=residual, min_replicas=need, max_replicas=top)


def _routed_live(
    routes: Iterable[ServiceRoute], live: Sequence[AllocationRow], rps_of: Callable[[str], float]
) -> dict[int, float]:
    """Route id → the requests/s it still carries: a route counts while replicas placed
    by its round on its pool are live (a route without a round: any replica on its pool),
    and the routes of one round and pool at most what those replicas serve (one of them
    may have ended early). The routes of replicas that ended are gone: what they carried
    is to be placed again."""
    by_round = Counter((a.round_id, a.pool_id) for a in live)
    by_pool = Counter(a.pool_id for a in live)

    def replicas(r: ServiceRoute) -> int:
        return by_pool[r.pool_id] if r.round_id is None else by_round[(r.round_id, r.pool_id)]

    kept = [r for r in routes if replicas(r) > 0]
    total: dict[tuple[int | None, str], float] = defaultdict(float)
    for r in kept:
        total[(r.round_id, r.pool_id)] += max(0.0, r.rps)
    out: dict[int, float] = {}
    for r in kept:
        carried = total[(r.round_id, r.pool_id)]
        serve = replicas(r) * rps_of(r.pool_id)
        out[r.id] = max(0.0, r.rps) * (min(1.0, serve / carried) if carried > 0 else 0.0)
    return out


def _replica_rps(rt: Runtime, svc: InferenceService) -> Callable[[str], float]:
    """GPU model → requests/s one replica of ``svc`` serves there (the market's sizing);
    0 where the catalogue knows neither."""
    model = rt.ctx.models.get(svc.model)

    def rps(gpu: str) -> float:
        acc = rt.ctx.accelerators.get(gpu)
        if model is None or acc is None:
            return 0.0
        prompt, output = svc.prompt_tokens, svc.output_tokens
        return replica_spec(model, acc, prompt, output, svc.ttft_ms, svc.tpot_ms).rps

    return rps


def _allowed(svc: InferenceService, gpu: str) -> bool:
    return svc.allowed_gpus is None or gpu in svc.allowed_gpus


def mark_scale_up_notes(notes: dict[str, list[str]], ups: Mapping[str, ScaleUp]) -> None:
    """A scale-up's reasons (its funds, the engine's) say why no more replicas were
    added; they never read as if the service were unplaced: its live replicas serve it.
    ``notes`` (item id → reasons) is updated in place."""
    for sid, up in ups.items():
        if sid in notes:
            notes[sid] = scale_up_reasons(notes[sid], up)


def scale_up_reasons(reasons: Iterable[str], up: ScaleUp) -> list[str]:
    """``reasons`` about a scale-up's residual, marked as such (:data:`SCALE_UP`)."""
    head = (
        f"{SCALE_UP}: {up.live_replicas} live replica(s) serve {up.covered_rps:.1f} of "
        f"{up.planned_rps:.1f} req/s planned; more were not added"
    )
    return [f"{head} — {r}" for r in reasons]


def note_held_scale_ups(
    notes: dict[str, list[str]],
    held: Mapping[str, ScaleUp | None],
    rows: Mapping[str, ServiceRow],
) -> None:
    """Busy services that do not enter the round: one whose live replicas now cover its
    plan sheds the scale-up reasons an earlier round noted (its other reasons stay); one
    that holds all its ``max_replicas`` says so. ``notes`` is updated in place."""
    for sid, up in held.items():
        reasons = list(rows[sid].last_reasons or [])
        if up is not None:
            why = f"capacity: the service holds its max_replicas ({rows[sid].max_replicas})"
            kept = scale_up_reasons([why], up)
        else:
            kept = [r for r in reasons if not r.startswith(SCALE_UP)]
        if kept != reasons:
            notes[sid] = kept
