"""A running service is scaled up in the next clearing round when its measured demand
rises, not only at its billing horizon: the new replicas join the live ones, whose
placement, hold and routes stay as they are; the wallet is held for the residual only.
A service whose live replicas cover its plan is left alone, round after round.

Market: one Shanghai site with an H100 pool of 2 nodes × 8 GPUs at a reserve of 10
yuan/GPU-h. Llama-3.1-8B at 1000 prompt / 250 output tokens under TTFT 2 s, TPOT 100 ms
serves ≈ 18.7 requests/s per H100; a request is worth 250 × 20 / 10⁶ = 0.005 yuan at the
bid. The estimator plans measured demand with a headroom of 1.2.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from suanli.market.sizing import replica_spec
from suanli.market.snapshot import BuyerId, InferenceService, ServiceId
from suanli.service.scale_up import SCALE_UP, _routed_live, _scale_up
from suanli.service.tables import AllocationRow, ServiceRoute

SPEC: dict[str, Any] = {
    "kind": "service",
    "name": "chat",
    "model": "Llama-3.1-8B",
    "demand_rps": {"Shanghai": 10},
    "tokens": {"prompt": 1000, "output": 250},
    "slo": {"ttft_ms": 2000, "tpot_ms": 100},
    "bid_cny_per_m_output_tokens": 20,
}
YUAN_PER_REQUEST = 250 * 20 / 1e6


def _replica_rps(x: Any) -> float:
    """Requests/s one H100 replica serves at this profile and SLO (≈ 18.7)."""
    cat = x.rt.catalog
    model, gpu = cat.models["Llama-3.1-8B"], cat.accelerators["H100"]
    return replica_spec(model, gpu, 1000, 250, 2000, 100).rps


def _setup(
    x: Any, *, fund_cny: float = 10_000, nodes: int = 2, **over: Any
) -> tuple[dict[str, str], str, str]:
    seller = x.tenant("dc", "seller")
    buyer = x.tenant("lab", "buyer", fund_cny=fund_cny)
    pool = x.market(seller, nodes=nodes)
    r = x.post("/v1/services", buyer, {**SPEC, **over})
    assert r.status_code == 201, r.text
    return buyer, r.json()["id"], pool


def _measure(x: Any, service_id: str, rps: float, window_s: float = 60.0) -> None:
    """A gateway reports ``rps`` of Shanghai over the last ``window_s``."""
    n = round(rps * window_s)
    end = x.clock.now()
    body = {
        "batch_id": uuid.uuid4().hex,
        "gateway": "edge-Shanghai",
        "window_start": (end - timedelta(seconds=window_s)).isoformat(),
        "window_end": end.isoformat(),
        "usage": [],
        "demand": [
            {
                "service_id": service_id,
                "city": "Shanghai",
                "requests": n,
                "prompt_tokens": n * 1000,
                "output_tokens": n * 250,
            }
        ],
    }
    r = x.post("/v1/gateway/reports", x.operator, body, key=body["batch_id"])
    assert r.status_code == 200, r.text


def _allocations(x: Any, service_id: str) -> list[AllocationRow]:
    with x.rt.db.read() as s:
        q = select(AllocationRow).where(AllocationRow.item_id == service_id)
        rows = list(s.scalars(q.order_by(AllocationRow.placed_at, AllocationRow.id)))
        s.expunge_all()
        return rows


def _routes(x: Any, service_id: str) -> list[tuple[Any, ...]]:
    with x.rt.db.read() as s:
        q = select(ServiceRoute).where(ServiceRoute.service_id == service_id)
        q = q.order_by(ServiceRoute.id)
        return [(r.city, r.pool_id, r.rps, r.round_id) for r in s.scalars(q)]


def _service(x: Any, buyer: dict[str, str], service_id: str) -> dict[str, Any]:
    r = x.get(f"/v1/services/{service_id}", buyer)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def test_rising_demand_adds_replicas_in_the_next_round(exchange: Any) -> None:
    """10 req/s declared: one replica. Gateways measure 50 req/s, planned at 60: the next
    round adds replicas for the 50 the first one was not routed, beside it. The wallet
    covers 50 req/s for a horizon (225 yuan) but not 60 (270 yuan): the scale-up is
    admitted for its residual."""
    x = exchange
    buyer, sid, pool = _setup(x, fund_cny=260)
    x.clear()
    [first] = _allocations(x, sid)
    [(_, _, first_rps, first_round)] = _routes(x, sid)
    assert first_rps == pytest.approx(10.0)
    escrow = x.wallet(buyer)["escrow_fen"]
    free = x.wallet(buyer)["wallet_fen"]
    assert 60 * 900 * YUAN_PER_REQUEST * 100 > free > 50 * 900 * YUAN_PER_REQUEST * 100

    x.clock.advance(seconds=60)
    _measure(x, sid, 50)
    summary = x.clear()
    assert (summary.services_placed, summary.services_scaled) == (0, 1)
    allocs = _allocations(x, sid)
    kept, added = allocs[0], allocs[1:]
    # The first placement is untouched: same allocation, still active, same hold.
    assert (kept.id, kept.active, kept.buyer_fen, kept.placed_at) == (
        first.id,
        True,
        first.buyer_fen,
        first.placed_at,
    )
    assert len(added) >= 2 and all(a.active and a.pool_id == pool for a in added)
    assert all(a.round_id == summary.round_id for a in added)
    # Held: the new replicas only.
    assert x.wallet(buyer)["escrow_fen"] - escrow == sum(a.buyer_fen for a in added)
    # Routes: the first round's row as it was, plus this round's.
    routes = _routes(x, sid)
    assert ("Shanghai", pool, pytest.approx(10.0), first_round) in routes
    assert sum(r[2] for r in routes) == pytest.approx(60.0)
    assert {r[3] for r in routes} == {first_round, summary.round_id}
    got = _service(x, buyer, sid)
    assert got["served_rps"] == pytest.approx(60.0)
    assert len(got["replicas"]) == 1 + len(added)
    assert got["last_reasons"] == []
    # Covered now: the next rounds add nothing.
    x.clock.advance(seconds=60)
    _measure(x, sid, 50)
    assert x.clear().services_scaled == 0
    assert len(_allocations(x, sid)) == len(allocs)
    assert x.audit() == []


def test_covered_demand_is_left_alone_round_after_round(exchange: Any) -> None:
    """Measured 8.4 req/s plans 10.08, 0.08 above what the replica was routed: below the
    churn threshold (5% of a replica), so no round re-enters the service."""
    x = exchange
    buyer, sid, _ = _setup(x)
    x.clear()
    [first] = _allocations(x, sid)
    routes = _routes(x, sid)
    escrow = x.wallet(buyer)["escrow_fen"]
    for _ in range(4):
        x.clock.advance(seconds=60)
        _measure(x, sid, 8.4)
        summary = x.clear()
        assert (summary.services_placed, summary.services_scaled) == (0, 0)
        assert summary.round_id is None  # nothing to clear
    assert _service(x, buyer, sid)["planned_demand_rps"]["Shanghai"] == pytest.approx(10.08)
    assert [a.id for a in _allocations(x, sid)] == [first.id]
    assert _routes(x, sid) == routes
    assert x.wallet(buyer)["escrow_fen"] == escrow
    assert _service(x, buyer, sid)["last_reasons"] == []


def test_max_replicas_bounds_a_scale_up(sqlite_exchange: Any) -> None:
    """At most 2 replicas: 120 req/s planned get one more, then none; the reasons say
    why, while the service keeps serving with its two."""
    x = sqlite_exchange
    buyer, sid, _ = _setup(x, replicas={"min": 0, "max": 2})
    x.clear()
    x.clock.advance(seconds=60)
    _measure(x, sid, 100)
    assert x.clear().services_scaled == 1
    assert len(_allocations(x, sid)) == 2
    got = _service(x, buyer, sid)
    assert got["served_rps"] == pytest.approx(10 + _replica_rps(x))
    reason = got["reason"]
    x.clock.advance(seconds=60)
    _measure(x, sid, 100)
    assert x.clear().services_scaled == 0
    assert len(_allocations(x, sid)) == 2
    got = _service(x, buyer, sid)
    assert (got["reason"], len(got["replicas"])) == (reason, 2)
    [why] = got["last_reasons"]
    assert why.startswith(SCALE_UP) and "max_replicas (2)" in why


def test_an_unplaceable_residual_leaves_the_service_as_it_is(sqlite_exchange: Any) -> None:
    """One node (8 H100s): 1000 req/s fill it with 7 more replicas (beside the first one,
    routed its 10 req/s); the next round finds no room for the rest. The service is still
    served by its 8: its placement, state, routes and served requests stay; only its
    reasons say why no more were added."""
    x = sqlite_exchange
    buyer, sid, _ = _setup(x, nodes=1)
    x.clear()
    x.clock.advance(seconds=60)
    _measure(x, sid, 1000)
    assert x.clear().services_scaled == 1
    assert len(_allocations(x, sid)) == 8
    before = _service(x, buyer, sid)
    routes = _routes(x, sid)
    escrow = x.wallet(buyer)["escrow_fen"]
    assert before["served_rps"] == pytest.approx(10 + 7 * _replica_rps(x))
    assert before["last_reasons"] and all(r.startswith(SCALE_UP) for r in before["last_reasons"])

    x.clock.advance(seconds=60)
    _measure(x, sid, 1000)
    summary = x.clear()
    assert summary.services_scaled == 0
    after = _service(x, buyer, sid)
    for field in ("state", "reason", "served_rps", "replicas"):
        assert after[field] == before[field], field
    assert _routes(x, sid) == routes
    assert x.wallet(buyer)["escrow_fen"] == escrow
    assert after["last_reasons"] and all(r.startswith(SCALE_UP) for r in after["last_reasons"])
    assert any("capacity" in r for r in after["last_reasons"])
    summary_why = x.get(f"/v1/services/{sid}/why", buyer).json()["summary"]
    assert summary_why.startswith("serving")
    assert x.audit() == []


def test_a_horizon_re_places_the_whole_service_and_its_routes(sqlite_exchange: Any) -> None:
    """Scaled up in one round with the first replica: both reach their horizon together
    and the round there places the service whole, replacing its routes."""
    x = sqlite_exchange
    _, sid, _ = _setup(x)
    x.clear()
    _measure(x, sid, 50)
    assert x.clear().services_scaled == 1  # same instant: all replicas share a horizon
    live = {a.id for a in _allocations(x, sid) if a.active}
    x.clock.advance(hours_=0.25)
    _measure(x, sid, 50, window_s=900)
    summary = x.clear()
    assert (summary.services_placed, summary.services_scaled) == (1, 0)
    now_live = [a for a in _allocations(x, sid) if a.active]
    assert not live & {a.id for a in now_live}
    routes = _routes(x, sid)
    assert {r[3] for r in routes} == {summary.round_id}
    assert sum(r[2] for r in routes) == pytest.approx(60.0)
    assert x.audit() == []


def test_replicas_ending_at_staggered_horizons_are_replaced_not_duplicated(
    sqlite_exchange: Any,
) -> None:
    """The first replica ends at its horizon while the ones added a minute later live
    on: its route goes, and the round places what it carried again (10 req/s) beside
    them; the live replicas' routes stay as they were."""
    x = sqlite_exchange
    buyer, sid, pool = _setup(x)
    x.clear()
    x.clock.advance(seconds=60)
    _measure(x, sid, 50)
    second = x.clear().round_id
    added = len(_allocations(x, sid)) - 1
    [kept] = _routes(x, sid)[1:]
    assert kept == ("Shanghai", pool, pytest.approx(50.0), second)
    x.clock.advance(seconds=14 * 60 + 1)  # the first one's horizon, not the others'
    _measure(x, sid, 50, window_s=840)
    summary = x.clear()
    assert (summary.services_placed, summary.services_scaled) == (0, 1)
    live = [a for a in _allocations(x, sid) if a.active]
    assert len(live) == added + 1
    assert sorted(_routes(x, sid), key=lambda r: r[3] or 0) == [
        kept,
        ("Shanghai", pool, pytest.approx(10.0), summary.round_id),
    ]
    assert _service(x, buyer, sid)["served_rps"] == pytest.approx(60.0)
    assert x.audit() == []


def _svc(**over: Any) -> InferenceService:
    base: dict[str, Any] = {
        "id": ServiceId("svc-1"),
        "buyer": BuyerId("t-1"),
        "model": "Llama-3.1-8B",
        "demand_rps": {"Shanghai": 10.0},
        "prompt_tokens": 1000,
        "output_tokens": 250,
        "ttft_ms": 2000,
        "tpot_ms": 100,
        "bid_cny_per_m_output_tokens": 20,
    }
    return InferenceService(**{**base, **over})


def _live(round_id: int, n: int) -> list[AllocationRow]:
    return [AllocationRow(round_id=round_id, pool_id="p", kind="replica") for _ in range(n)]


def _route(route_id: int, round_id: int | None, rps: float) -> ServiceRoute:
    return ServiceRoute(id=route_id, round_id=round_id, city="Shanghai", pool_id="p", rps=rps)


def _residual(svc: InferenceService, live: int) -> Any:
    """``_scale_up`` of ``svc`` with ``live`` replicas of round 1 on pool p, routed 10
    req/s of Shanghai, at 18.7 req/s a replica."""
    return _scale_up(svc, _live(1, live), [_route(7, 1, 10.0)], {"p": "H100"}, lambda g: 18.7)


def test_a_short_service_enters_with_its_residual_and_bounds_less_the_live() -> None:
    svc = _svc(demand_rps={"Shanghai": 30.0, "Beijing": 4.0}, max_replicas=4)
    up, residual = _residual(svc, 1)
    assert residual.demand_rps == {"Shanghai": pytest.approx(20.0), "Beijing": 4.0}
    assert (residual.min_replicas, residual.max_replicas) == (0, 3)
    assert (up.covered_rps, up.planned_rps, dict(up.kept_routes)) == (10.0, 34.0, {7: 10.0})


def test_a_covered_or_nearly_covered_service_is_left_alone() -> None:
    assert _residual(_svc(demand_rps={"Shanghai": 10.0}), 1) is None
    # 0.5 short: under 5% of a replica (0.935 req/s).
    assert _residual(_svc(demand_rps={"Shanghai": 10.5}), 1) is None
    assert _residual(_svc(demand_rps={"Shanghai": 11.0}), 1) is not None


def test_a_service_holding_its_max_replicas_is_held_back() -> None:
    up, residual = _residual(_svc(demand_rps={"Shanghai": 30.0}, max_replicas=1), 1)
    assert residual is None
    assert (up.live_replicas, up.covered_rps, up.planned_rps) == (1, 10.0, 30.0)


def test_missing_min_replicas_enter_anchored_on_the_largest_city() -> None:
    """Covered, but 2 of its 3 required replicas ended: they enter at zero demand."""
    svc = _svc(demand_rps={"Shanghai": 10.0, "Beijing": 2.0}, min_replicas=3)
    route = [_route(7, 1, 10.0), ServiceRoute(id=8, round_id=1, city="Beijing", pool_id="p", rps=2)]
    found = _scale_up(svc, _live(1, 1), route, {"p": "H100"}, lambda g: 18.7)
    assert found is not None and found[1] is not None
    residual = found[1]
    assert (residual.demand_rps, residual.min_replicas, residual.max_replicas) == (
        {"Shanghai": 0.0},
        2,
        None,
    )


def test_routes_count_only_while_their_rounds_replicas_live() -> None:
    """Round 1's replica ended; round 2's two live on the same pool, one of three having
    failed early: round 1's route is gone, round 2's counts at most two replicas."""
    routes = [_route(1, 1, 10.0), _route(2, 2, 50.0), _route(3, None, 5.0)]
    kept = _routed_live(routes, _live(2, 2), lambda pool: 18.7)
    assert kept == {2: pytest.approx(37.4), 3: 5.0}
