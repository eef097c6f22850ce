"""Gateways' reports: metered usage and measured demand, recorded exactly once per batch,
and the demand the next rounds plan from them (with headroom, down only after the
hysteresis); the exchange's own gateway reports in process.

Market: one Shanghai site with an H100 pool of 2 nodes × 8 GPUs at a reserve of 10
yuan/GPU-h. Llama-3.1-8B at 1000 prompt / 250 output tokens under TTFT 2 s, TPOT 100 ms
serves ≈ 18.7 requests/s per H100. The estimator: half-life 300 s, headroom 1.2, down
after 900 s below 75% of the plan.
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from datetime import timedelta
from typing import Any

import anyio
import pytest
from sqlalchemy import func, select

from suanli.gateway.protocol import DemandLine, GatewayReport, UsageLine
from suanli.service.gateway_link import LocalExchangeLink
from suanli.service.gateway_reports import submit_report
from suanli.service.problems import Unprocessable
from suanli.service.tables import GatewayBatch, InferenceKey, ServiceTraffic, TokenUsage, new_id

SPEC: dict[str, Any] = {
    "kind": "service",
    "name": "chat",
    "model": "Llama-3.1-8B",
    "demand_rps": {"Shanghai": 10},
    "tokens": {"prompt": 1000, "output": 250},
    "slo": {"ttft_ms": 2000, "tpot_ms": 100},
    "bid_cny_per_m_output_tokens": 20,
}


def _setup(x: Any) -> tuple[dict[str, str], dict[str, Any]]:
    seller = x.tenant("dc", "seller")
    buyer = x.tenant("lab", "buyer", fund_cny=10_000)
    x.market(seller)
    r = x.post("/v1/services", buyer, SPEC)
    assert r.status_code == 201, r.text
    return buyer, r.json()


def _key(x: Any, svc: dict[str, Any], *, revoked: bool = False) -> str:
    key_id = new_id("ik")
    now = x.clock.now()

    def add(s: Any) -> None:
        s.add(
            InferenceKey(
                id=key_id,
                tenant_id=svc["tenant_id"],
                service_id=svc["id"],
                name="app",
                key_hash=hashlib.sha256(key_id.encode()).hexdigest(),
                prefix=key_id[:8],
                created_at=now,
                revoked_at=now if revoked else None,
            )
        )

    x.rt.db.transact(add)
    x.rt.serving_changes.bump()
    return key_id


def _batch(
    x: Any,
    *,
    usage: list[dict[str, Any]] | None = None,
    demand: list[dict[str, Any]] | None = None,
    window_s: float = 60.0,
    batch_id: str | None = None,
    gateway: str = "edge-Shanghai",
) -> dict[str, Any]:
    end = x.clock.now()
    return {
        "batch_id": batch_id or uuid.uuid4().hex,
        "gateway": gateway,
        "window_start": (end - timedelta(seconds=window_s)).isoformat(),
        "window_end": end.isoformat(),
        "usage": usage or [],
        "demand": demand or [],
    }


def _use(key_id: str, svc: dict[str, Any], tokens: tuple[int, int, int]) -> dict[str, Any]:
    return {
        "key_id": key_id,
        "service_id": svc["id"],
        "city": "Shanghai",
        "requests": 3,
        "input_tokens": tokens[0],
        "cached_input_tokens": tokens[1],
        "output_tokens": tokens[2],
    }


def _demand(svc: dict[str, Any], rps: float, window_s: float = 60.0, **kw: Any) -> dict[str, Any]:
    n = round(rps * window_s)
    line = {
        "service_id": svc["id"],
        "city": "Shanghai",
        "requests": n,
        "prompt_tokens": n * 1000,
        "output_tokens": n * 250,
    }
    return {**line, **kw}


def _send(x: Any, body: dict[str, Any]) -> Any:
    return x.post("/v1/gateway/reports", x.operator, body, key=body["batch_id"])


def _count(x: Any, table: Any) -> int:
    with x.rt.db.read() as s:
        return int(s.scalar(select(func.count()).select_from(table)) or 0)


def _tokens_today(x: Any, key_id: str) -> int:
    state = x.get("/v1/gateway/state", x.operator).json()
    [key] = [k for k in state["keys"] if k["id"] == key_id]
    return int(key["tokens_today"])


def test_a_batch_is_recorded_once_however_often_it_is_sent(exchange: Any) -> None:
    x = exchange
    _, svc = _setup(x)
    key_id = _key(x, svc)
    body = _batch(x, usage=[_use(key_id, svc, (1000, 200, 300))], demand=[_demand(svc, 5)])
    first = _send(x, body)
    assert first.status_code == 200, first.text
    assert first.json() == {"batch_id": body["batch_id"], "duplicate": False}
    again = _send(x, body)
    assert again.json() == {"batch_id": body["batch_id"], "duplicate": True}
    # A resend under another Idempotency-Key (a restarted gateway) is still the same batch.
    assert x.post("/v1/gateway/reports", x.operator, body).json()["duplicate"] is True
    assert (_count(x, TokenUsage), _count(x, ServiceTraffic), _count(x, GatewayBatch)) == (1, 1, 1)
    assert _tokens_today(x, key_id) == 1500
    with x.rt.db.read() as s:
        row = s.scalars(select(TokenUsage)).one()
        assert (row.tenant_id, row.service_id, row.city) == (
            svc["tenant_id"],
            svc["id"],
            "Shanghai",
        )


def test_concurrent_twins_record_a_batch_once(exchange: Any) -> None:
    x = exchange
    _, svc = _setup(x)
    key_id = _key(x, svc)
    body = _batch(x, usage=[_use(key_id, svc, (10, 0, 5))], demand=[_demand(svc, 5)])
    acks: list[bool] = []

    def go() -> None:
        r = _send(x, body)
        assert r.status_code == 200, r.text
        acks.append(r.json()["duplicate"])

    threads = [threading.Thread(target=go) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(acks) == [False] + [True] * 7
    assert (_count(x, TokenUsage), _count(x, ServiceTraffic)) == (1, 1)
    assert _tokens_today(x, key_id) == 15


def test_a_line_for_an_unknown_service_refuses_the_whole_batch(sqlite_exchange: Any) -> None:
    x = sqlite_exchange
    _, svc = _setup(x)
    key_id = _key(x, svc)
    good = _use(key_id, svc, (10, 0, 5))
    body = _batch(x, usage=[good, {**good, "service_id": "svc-nope"}])
    r = _send(x, body)
    assert r.status_code == 422
    problem = r.json()
    assert "svc-nope" in problem["detail"]
    assert problem["errors"] == [
        {"field": "body.usage[1].service_id", "reason": "no service 'svc-nope'"}
    ]
    assert (_count(x, GatewayBatch), _count(x, TokenUsage)) == (0, 0)
    # Fixed and sent again under the same batch id: recorded.
    assert _send(x, {**body, "usage": [good]}).json()["duplicate"] is False
    # Values the tables cannot hold are 422 too, never a 500.
    for bad in (
        {**good, "requests": 2**40},
        {**good, "key_id": "k" * 41},
        {**good, "city": "Shang\x00hai"},
    ):
        assert _send(x, _batch(x, usage=[bad])).status_code == 422
    backwards = {**_batch(x), "window_start": x.clock.now().isoformat()}
    backwards["window_end"] = (x.clock.now() - timedelta(seconds=1)).isoformat()
    assert _send(x, backwards).status_code == 422


def test_a_revoked_keys_usage_is_still_recorded(sqlite_exchange: Any) -> None:
    x = sqlite_exchange
    _, svc = _setup(x)
    revoked = _key(x, svc, revoked=True)
    assert _send(x, _batch(x, usage=[_use(revoked, svc, (7, 0, 3))])).json()["duplicate"] is False
    with x.rt.db.read() as s:
        assert s.scalar(select(func.sum(TokenUsage.output_tokens))) == 3
    state = x.get("/v1/gateway/state", x.operator).json()
    assert revoked not in {k["id"] for k in state["keys"]}


def test_tokens_today_count_from_midnight_utc(sqlite_exchange: Any) -> None:
    x = sqlite_exchange
    _, svc = _setup(x)
    key_id = _key(x, svc)
    _send(x, _batch(x, usage=[_use(key_id, svc, (100, 0, 20))]))
    _send(x, _batch(x, usage=[_use(key_id, svc, (1, 0, 1))]))
    assert _tokens_today(x, key_id) == 122
    now = x.clock.now()
    tomorrow = (now + timedelta(days=1)).replace(hour=0, minute=0, second=1, microsecond=0)
    x.clock.advance(seconds=(tomorrow - now).total_seconds())
    assert _tokens_today(x, key_id) == 0


def _service(x: Any, buyer: dict[str, str], svc: dict[str, Any]) -> dict[str, Any]:
    got = x.get(f"/v1/services/{svc['id']}", buyer).json()
    return got  # type: ignore[no-any-return]


def test_measured_demand_is_planned_and_scaled_down_only_after_hysteresis(
    sqlite_exchange: Any,
) -> None:
    x = sqlite_exchange
    buyer, svc = _setup(x)
    x.clear()
    got = _service(x, buyer, svc)
    assert (len(got["replicas"]), got["planned_demand_rps"]) == (1, {"Shanghai": 10.0})

    # Gateways measure 100 requests/s where 10 were declared.
    _send(x, _batch(x, demand=[_demand(svc, 100)]))
    x.clear()  # the next round adds replicas for the 110 req/s the live one is not routed
    got = _service(x, buyer, svc)
    assert got["measured_rps"]["Shanghai"] == pytest.approx(100.0)
    assert got["planned_demand_rps"]["Shanghai"] == pytest.approx(120.0)  # headroom 1.2
    assert len(got["replicas"]) == 7

    # At the horizon (0.25 h) no gateway reported since: the estimate decayed to 12.5
    # (three half-lives), far below the plan, but the plan holds until it has stayed low
    # for 900 s. 120 req/s take 7 replicas of 18.7.
    x.clock.advance(hours_=0.25)
    x.clear()
    got = _service(x, buyer, svc)
    assert got["planned_demand_rps"]["Shanghai"] == pytest.approx(120.0)
    assert len(got["replicas"]) == 7
    assert got["served_rps"] == pytest.approx(120.0)

    # Low for 900 s: scaled down to the estimate (100 / 2⁶ × 1.2 = 1.875 req/s).
    x.clock.advance(hours_=0.25)
    x.clear()
    got = _service(x, buyer, svc)
    assert got["planned_demand_rps"]["Shanghai"] == pytest.approx(1.875)
    assert len(got["replicas"]) == 1
    assert x.audit() == []


def test_two_gateways_measuring_one_city_add_up(sqlite_exchange: Any) -> None:
    """The edge and the exchange's own gateway each see 50 req/s of Shanghai every 10 s;
    the estimate converges on their sum, not their mean."""
    x = sqlite_exchange
    _, svc = _setup(x)
    for _ in range(180):  # 30 min = 6 half-lives
        x.clock.advance(seconds=9.8)
        _send(x, _batch(x, demand=[_demand(svc, 50, 10)], window_s=10, gateway="edge"))
        x.clock.advance(seconds=0.2)
        _send(x, _batch(x, demand=[_demand(svc, 50, 10)], window_s=10, gateway="exchange"))
    measured = x.get(f"/v1/services/{svc['id']}", x.operator).json()["measured_rps"]
    assert measured["Shanghai"] == pytest.approx(100.0, rel=0.03)


def test_the_in_process_link_serves_and_records_like_the_endpoints(sqlite_exchange: Any) -> None:
    x = sqlite_exchange
    _, svc = _setup(x)
    key_id = _key(x, svc)
    link = LocalExchangeLink(x.rt)
    report = GatewayReport(
        batch_id="local-0001",
        gateway="exchange",
        window_start=x.clock.now() - timedelta(seconds=10),
        window_end=x.clock.now(),
        usage=[
            UsageLine(
                key_id=key_id,
                service_id=svc["id"],
                city="Shanghai",
                requests=1,
                input_tokens=5,
                output_tokens=5,
            )
        ],
        demand=[
            DemandLine(
                service_id=svc["id"],
                city="Shanghai",
                requests=10,
                prompt_tokens=100,
                output_tokens=50,
            )
        ],
    )

    async def run() -> tuple[Any, ...]:
        first = await link.report(report)
        again = await link.report(report)
        state = await link.state(None, 0)
        same = await link.state(state.etag, 0.05)  # nothing changed: the same state
        await link.aclose()
        return first, again, state, same

    first, again, state, same = anyio.run(run)
    assert (first.duplicate, again.duplicate) == (False, True)
    http = x.get("/v1/gateway/state", x.operator).json()
    assert state.etag == same.etag == http["etag"]
    assert [k.tokens_today for k in state.keys] == [10]
    bad = report.model_copy(update={"batch_id": "local-0002", "demand": []})
    bad = bad.model_copy(
        update={"usage": [report.usage[0].model_copy(update={"service_id": "svc-x"})]}
    )
    with pytest.raises(Unprocessable):
        submit_report(x.rt, bad)
