"""The routing state inference gateways serve from: replicas with endpoints, the round's
routes per demand city (persisted by every round), fallbacks within the TTFT SLO, keys;
its etag; the long-poll; draining a replica the round did not place again; operators
only.

Market: agent A's site in Shanghai with one H100 node (8 GPUs) at a reserve of 10
yuan/GPU-h. Llama-3.1-8B at 1000 prompt / 250 output tokens under TTFT 2 s, TPOT 100 ms:
one H100 per replica, ≈ 18.7 requests/s, a batch of 341 in flight.
"""

from __future__ import annotations

import hashlib
import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select, update

from suanli.perf.capacity import LatencySLO, TokenProfile, replica_capacity
from suanli.service import gateway_feed
from suanli.service.agent_session import bump_after_commit
from suanli.service.tables import InferenceKey, ServiceRoute, new_id

H100_NODE = {"name": "h100", "gpu_model": "H100", "gpu_count": 8, "gpus_per_node": 8}
POOL = "site-a/h100"
SPEC: dict[str, Any] = {
    "kind": "service",
    "name": "chat",
    "model": "Llama-3.1-8B",
    "demand_rps": {"Shanghai": 10},
    "tokens": {"prompt": 1000, "output": 250},
    "slo": {"ttft_ms": 2000, "tpot_ms": 100},
    "bid_cny_per_m_output_tokens": 20,
    "command": "vllm serve meta-llama/Llama-3.1-8B-Instruct --port $PORT",
}


class Site:
    """Plays site A's agent through the API."""

    def __init__(self, x: Any) -> None:
        self.x = x
        self.seller = x.tenant("dc", "seller")
        body = {
            "site_id": "site-a",
            "backend": "local",
            "host": "test-host",
            "city": "Shanghai",
            "reserve_cny_per_gpu_hour": 10.0,
            "pools": [H100_NODE],
            "held": [],
        }
        r = x.client.post("/v1/agent/register", headers=self.seller, json=body)
        assert r.status_code == 200, r.text
        self.session = r.json()["session"]

    def lease(self) -> list[dict[str, Any]]:
        body = {"site_id": "site-a", "session": self.session, "kinds": ["job", "replica"]}
        r = self.x.client.post("/v1/agent/leases", headers=self.seller, json=body)
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    def running(self, lease: dict[str, Any], endpoint: str) -> None:
        body = {
            "allocation_id": lease["allocation_id"],
            "lease_token": lease["lease_token"],
            "state": "running",
            "endpoint": endpoint,
        }
        r = self.x.post("/v1/agent/reports", self.seller, body)
        assert r.status_code == 200, r.text

    def heartbeat(self, **kw: Any) -> dict[str, Any]:
        body = {"site_id": "site-a", "session": self.session, **kw}
        r = self.x.client.post("/v1/agent/heartbeat", headers=self.seller, json=body)
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]


def _buyer_service(x: Any, **over: Any) -> tuple[dict[str, str], dict[str, Any]]:
    buyer = x.tenant("lab", "buyer", fund_cny=10_000)
    r = x.post("/v1/services", buyer, {**SPEC, **over})
    assert r.status_code == 201, r.text
    return buyer, r.json()


def _state(x: Any, **params: Any) -> dict[str, Any]:
    r = x.get("/v1/gateway/state", x.operator, **params)
    assert r.status_code == 200, r.text
    assert r.headers["etag"] == f'"{r.json()["etag"]}"'
    return r.json()  # type: ignore[no-any-return]


def _entry(state: dict[str, Any], service_id: str) -> dict[str, Any]:
    [svc] = [s for s in state["services"] if s["id"] == service_id]
    return svc  # type: ignore[no-any-return]


def _add_key(x: Any, svc: dict[str, Any]) -> str:
    key_id = new_id("ik")

    def add(s: Any) -> None:
        s.add(
            InferenceKey(
                id=key_id,
                tenant_id=svc["tenant_id"],
                service_id=svc["id"],
                name="app",
                key_hash=hashlib.sha256(key_id.encode()).hexdigest(),
                prefix=key_id[:8],
                rpm=60,
                created_at=x.clock.now(),
            )
        )

    x.rt.db.transact(add)
    return key_id


def test_the_state_carries_replicas_routes_and_keys(exchange: Any) -> None:
    x = exchange
    site = Site(x)
    _, svc = _buyer_service(x)
    x.clear()
    with x.rt.db.read() as s:
        routes = [
            (r.city, r.pool_id, r.rps, r.round_id)
            for r in s.scalars(select(ServiceRoute).where(ServiceRoute.service_id == svc["id"]))
        ]
    [(route_city, route_pool, route_rps, round_id)] = routes
    assert (route_city, route_pool, route_rps) == ("Shanghai", POOL, pytest.approx(10.0))

    # Placed, not started: listed (its keys stay valid) without replicas.
    entry = _entry(_state(x), svc["id"])
    assert (entry["model"], entry["ttft_ms"], entry["replicas"], entry["routes"]) == (
        "Llama-3.1-8B",
        2000,
        [],
        {},
    )

    [lease] = site.lease()
    site.running(lease, "http://10.0.0.5:8123")
    state = _state(x)
    assert state["round_id"] == round_id
    entry = _entry(state, svc["id"])
    batch = replica_capacity(
        x.rt.catalog.models["Llama-3.1-8B"],
        x.rt.catalog.accelerators["H100"],
        TokenProfile(1000, 250),
        LatencySLO(2000, 100),
    ).batch
    assert entry["replicas"] == [
        {
            "allocation_id": lease["allocation_id"],
            "pool_id": POOL,
            "site_id": "site-a",
            "city": "Shanghai",
            "endpoint": "http://10.0.0.5:8123",
            "health": "starting",
            "max_concurrency": batch,
            "health_path": "/health",
        }
    ]
    assert 0 < entry["server_ttft_ms"] < 2000
    routes = entry["routes"]
    [home] = routes["Shanghai"]
    assert (home["pool_id"], home["weight"], home["in_plan"]) == (POOL, 10.0, True)
    assert 0 < home["rtt_ms"] < 10
    # Beijing is not in the plan, but Shanghai's pool still meets the SLO from there.
    [north] = routes["Beijing"]
    assert (north["pool_id"], north["weight"], north["in_plan"]) == (POOL, 0.0, False)
    assert north["rtt_ms"] > home["rtt_ms"]
    assert set(routes) == {*x.rt.catalog.cities, "*"}  # 2 s leaves every city in reach
    assert routes["*"] == [{"pool_id": POOL, "weight": 10.0, "rtt_ms": 0.0, "in_plan": True}]

    key_id = _add_key(x, svc)
    [key] = _state(x)["keys"]
    assert (key["id"], key["service_id"], key["rpm"], key["tokens_today"]) == (
        key_id,
        svc["id"],
        60,
        0,
    )
    assert key["digest"] == hashlib.sha256(key_id.encode()).hexdigest()


def test_the_etag_moves_with_keys_health_and_rounds_only(sqlite_exchange: Any) -> None:
    x = sqlite_exchange
    site = Site(x)
    _, svc = _buyer_service(x)
    x.clear()
    [lease] = site.lease()
    site.running(lease, "http://10.0.0.5:8123")
    etag = _state(x)["etag"]
    x.clock.advance(seconds=30)
    assert _state(x)["etag"] == etag  # nothing changed (generated_at is not part of it)

    healthy = [{"allocation_id": lease["allocation_id"], "health": "healthy"}]
    site.heartbeat(replicas=healthy)
    after_health = _state(x)["etag"]
    assert after_health != etag
    site.heartbeat(replicas=healthy)  # the same health again
    assert _state(x)["etag"] == after_health

    key_id = _add_key(x, svc)
    with_key = _state(x)["etag"]
    assert with_key != after_health
    x.rt.db.transact(
        lambda s: s.execute(
            update(InferenceKey)
            .where(InferenceKey.id == key_id)
            .values(revoked_at=datetime.now(UTC))
        )
    )
    assert _state(x)["etag"] == after_health  # revoked: the key is gone again

    # A new round places the service again at its horizon: new routes, a new etag.
    x.clock.advance(hours_=0.25)
    x.clear()
    assert _state(x)["etag"] != after_health


def test_a_replica_the_round_drops_drains_while_a_kept_one_is_handed_over(
    sqlite_exchange: Any,
) -> None:
    """30 req/s take 2 replicas; the owner lowers demand to 10, so the round at the
    horizon places 1. The replica it does not place again leaves the state at once (the
    agent parks it for its handover time, then stops it: that is its drain); the kept one
    stays listed until the new placement, which takes the running process over, says so."""
    x = sqlite_exchange
    site = Site(x)
    buyer, svc = _buyer_service(x, demand_rps={"Shanghai": 30})
    x.clear()
    leases = sorted(site.lease(), key=lambda le: le["allocation_id"])
    assert len(leases) == 2
    for i, le in enumerate(leases):
        site.running(le, f"http://10.0.0.5:{8000 + i}")
    assert len(_entry(_state(x), svc["id"])["replicas"]) == 2

    r = x.client.patch(
        f"/v1/services/{svc['id']}", headers=buyer, json={"demand_rps": {"Shanghai": 10}}
    )
    assert r.status_code == 200
    x.clock.advance(hours_=0.25)
    x.clear()
    [kept] = _entry(_state(x), svc["id"])["replicas"]
    assert (kept["allocation_id"], kept["endpoint"]) == (
        leases[0]["allocation_id"],
        "http://10.0.0.5:8000",
    )
    held = [
        {"allocation_id": le["allocation_id"], "lease_token": le["lease_token"]} for le in leases
    ]
    stops = site.heartbeat(held=held)["stop"]
    assert sorted(s["allocation_id"] for s in stops) == [le["allocation_id"] for le in leases]
    assert all(s["handover"] for s in stops)  # parked, not killed: the dropped one drains

    [nxt] = site.lease()
    assert nxt["continues"] == leases[0]["allocation_id"]
    site.running(nxt, "http://10.0.0.5:8000")
    [now_serving] = _entry(_state(x), svc["id"])["replicas"]
    assert (now_serving["allocation_id"], now_serving["endpoint"]) == (
        nxt["allocation_id"],
        "http://10.0.0.5:8000",
    )

    # Stopped by its owner: gone from the state, with its keys.
    _add_key(x, svc)
    x.post(f"/v1/services/{svc['id']}/stop", buyer)
    state = _state(x)
    assert (state["services"], state["keys"]) == ([], [])


def test_a_long_poll_answers_when_the_state_changes(
    sqlite_exchange: Any, monkeypatch: pytest.MonkeyPatch, wait_until: Any
) -> None:
    x = sqlite_exchange
    _, svc = _buyer_service(x)
    etag = _state(x)["etag"]
    # A stale or absent etag is answered at once; an unchanged state after wait_s.
    assert _state(x, etag="0" * 64, wait_s=30)["etag"] == etag
    assert _state(x, etag=etag, wait_s=0.2)["etag"] == etag

    # Only a bump may wake it now (no periodic re-read within the test's time).
    monkeypatch.setattr(gateway_feed, "RECHECK_S", 120.0)
    reads: list[int] = []
    real_read = gateway_feed.read_state

    def counting_read(rt: Any) -> Any:
        reads.append(1)
        return real_read(rt)

    monkeypatch.setattr(gateway_feed, "read_state", counting_read)
    got: list[dict[str, Any]] = []
    started = time.monotonic()
    poll = threading.Thread(target=lambda: got.append(_state(x, etag=etag, wait_s=30)))
    poll.start()
    wait_until(lambda: len(reads) >= 1, 10, "the poll's first read")
    key_id = _add_key(x, svc)
    x.rt.serving_changes.bump()
    wait_until(lambda: bool(got), 10, "the long-poll to answer after the bump")
    poll.join()
    assert time.monotonic() - started < 15  # well before its 30 s
    assert got[0]["etag"] != etag and [k["id"] for k in got[0]["keys"]] == [key_id]


def test_only_operators_reach_the_gateway_endpoints(sqlite_exchange: Any) -> None:
    x = sqlite_exchange
    buyer, _ = _buyer_service(x)
    seller = x.tenant("dc", "seller")
    report = {
        "batch_id": "batch-0001",
        "gateway": "edge",
        "window_start": "2025-03-01T00:00:00Z",
        "window_end": "2025-03-01T00:00:10Z",
    }
    for who in (buyer, seller):
        assert x.get("/v1/gateway/state", who).status_code == 403
        r = x.post("/v1/gateway/reports", who, report)
        assert r.status_code == 403
        assert r.headers["content-type"].startswith("application/problem+json")
    assert x.client.get("/v1/gateway/state").status_code == 401
    assert x.post("/v1/gateway/reports", x.operator, report).json()["duplicate"] is False
    assert x.get("/v1/gateway/state", x.operator, wait_s=31).status_code == 422

    paths = x.client.get("/openapi.json").json()["paths"]
    state_ok = paths["/v1/gateway/state"]["get"]["responses"]["200"]
    report_ok = paths["/v1/gateway/reports"]["post"]["responses"]["200"]
    assert state_ok["content"]["application/json"]["schema"]["$ref"].endswith("/GatewayState")
    assert report_ok["content"]["application/json"]["schema"]["$ref"].endswith("/ReportAck")
    assert "patch" in paths["/v1/services/{service_id}"]


def test_agents_changes_wake_gateways_only_once_committed(sqlite_exchange: Any) -> None:
    """What heartbeats and replica reports use to wake state polls: a bump after the
    commit, none on a rollback."""
    x = sqlite_exchange
    changes = x.rt.serving_changes
    before = changes.count

    def change(s: Any) -> None:
        bump_after_commit(s, changes)
        assert changes.count == before  # not yet: a woken poll would read the old rows

    x.rt.db.transact(change)
    assert changes.count == before + 1

    def fail(s: Any) -> None:
        bump_after_commit(s, changes)
        raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        x.rt.db.transact(fail)
    assert changes.count == before + 1
