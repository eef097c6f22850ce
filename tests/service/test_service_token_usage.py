"""Token usage and traffic for service owners: sums per service, key, city or day that
count every batch's tokens once, CSV to re-bill with, traffic per city with SLO
attainment, token quantities on invoices, and other tenants kept out."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest

from suanli.service.tables import GatewayBatch, ServiceRow, ServiceTraffic, TokenUsage

SERVICE = {
    "kind": "service",
    "name": "chat",
    "model": "Llama-3.1-8B",
    "demand_rps": {"Shanghai": 5},
    "tokens": {"prompt": 1000, "output": 250},
    "slo": {"ttft_ms": 2000, "tpot_ms": 100},
    "bid_cny_per_m_output_tokens": 20,
}
SUMS = ("requests", "errors", "input_tokens", "cached_input_tokens", "output_tokens")


def _service(x: Any, buyer: dict[str, str], name: str) -> str:
    r = x.post("/v1/services", buyer, {**SERVICE, "name": name})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _key(x: Any, buyer: dict[str, str], svc: str, name: str) -> str:
    r = x.post(f"/v1/services/{svc}/keys", buyer, {"name": name})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _batch(
    x: Any,
    end: datetime,
    usage: Sequence[dict[str, Any]] = (),
    traffic: Sequence[dict[str, Any]] = (),
    *,
    seconds: float = 10.0,
) -> str:
    """One gateway batch as the gateway report endpoint records it: the batch, its usage
    lines (tenant = the service's owner) and its demand lines."""
    batch_id = uuid.uuid4().hex
    start = end - timedelta(seconds=seconds)

    def run(session: Any) -> None:
        session.add(
            GatewayBatch(
                batch_id=batch_id,
                gateway="edge-Shanghai",
                window_start=start,
                window_end=end,
                received_at=x.clock.now(),
            )
        )
        session.flush()
        for u in usage:
            owner = session.get(ServiceRow, u["service_id"]).tenant_id
            row = {"errors": 0, "cached_input_tokens": 0, "city": "Shanghai", **u}
            session.add(TokenUsage(batch_id=batch_id, tenant_id=owner, window_end=end, **row))
        for d in traffic:
            row = {"cached_tokens": 0, "slo_met": 0, "slo_total": 0, "rejected": 0, **d}
            session.add(
                ServiceTraffic(batch_id=batch_id, window_start=start, window_end=end, **row)
            )

    x.rt.db.transact(run)
    return batch_id


def _line(svc: str, key: str, city: str = "Shanghai", n: int = 1) -> dict[str, Any]:
    return {
        "service_id": svc,
        "key_id": key,
        "city": city,
        "requests": 10 * n,
        "errors": n,
        "input_tokens": 1000 * n,
        "cached_input_tokens": 500 * n,
        "output_tokens": 200 * n,
    }


@pytest.fixture
def usage(exchange: Any) -> dict[str, Any]:
    """Two services of alice (keys a1, a2 on chat; b1 on code) over two days, bob's
    service beside them; bids set on chat so its tokens have a value."""
    x = exchange
    alice, bob = x.tenant("alice", "buyer"), x.tenant("bob", "buyer")
    chat, code, other = (
        _service(x, alice, "chat"),
        _service(x, alice, "code"),
        _service(x, bob, "bobs"),
    )
    a1, a2, b1 = _key(x, alice, chat, "a1"), _key(x, alice, chat, "a2"), _key(x, alice, code, "b1")
    z1 = _key(x, bob, other, "z1")

    def bids(session: Any) -> None:
        row = session.get(ServiceRow, chat)
        row.bid_cny_per_m_input_tokens = 2.0
        row.bid_cny_per_m_cached_input_tokens = 0.5
        row.bid_cny_per_m_output_tokens = 8.0

    x.rt.db.transact(bids)
    day1 = x.clock.now()
    # Two batches carry identical-looking lines: distinct batches, both counted.
    _batch(x, day1, [_line(chat, a1), _line(chat, a2, "Beijing", 2), _line(code, b1)])
    _batch(x, day1 + timedelta(seconds=10), [_line(chat, a1)])
    _batch(x, day1 + timedelta(days=1), [_line(chat, a1, n=3), _line(other, z1, n=7)])
    return {
        "x": x,
        "alice": alice,
        "bob": bob,
        "chat": chat,
        "code": code,
        "other": other,
        "keys": {"a1": a1, "a2": a2, "b1": b1, "z1": z1},
        "day1": day1,
    }


def _by(rows: list[dict[str, Any]], field: str) -> dict[str, dict[str, Any]]:
    return {r[field]: r for r in rows}


def test_sums_by_service_count_each_batch_once(usage: dict[str, Any]) -> None:
    x, alice = usage["x"], usage["alice"]
    rows = x.get("/v1/token-usage", alice).json()
    by = _by(rows, "service_name")
    assert set(by) == {"chat", "code"}  # bob's service is not alice's
    # chat: a1 ×1 + a2 ×2 + a1 ×1 (second batch) + a1 ×3 = 7 units
    assert [by["chat"][c] for c in SUMS] == [70, 7, 7000, 3500, 1400]
    assert [by["code"][c] for c in SUMS] == [10, 1, 1000, 500, 200]
    # chat at its bids: (7000·2 + 3500·0.5 + 1400·8) / 1e6 yuan
    assert by["chat"]["value_cny"] == pytest.approx((14_000 + 1_750 + 11_200) / 1e6)
    assert by["code"]["value_cny"] == pytest.approx(200 * 20 / 1e6)  # output bid only
    assert by["chat"]["key_id"] is None and by["chat"]["service_id"] == usage["chat"]


def test_sums_by_key_city_and_day(usage: dict[str, Any]) -> None:
    x, alice, keys = usage["x"], usage["alice"], usage["keys"]
    by_key = _by(x.get("/v1/token-usage", alice, group_by="key").json(), "key_name")
    assert {k: v["requests"] for k, v in by_key.items()} == {"a1": 50, "a2": 20, "b1": 10}
    assert by_key["a1"]["key_id"] == keys["a1"] and by_key["a1"]["service_name"] == "chat"
    by_city = _by(x.get("/v1/token-usage", alice, group_by="city").json(), "city")
    assert {c: v["requests"] for c, v in by_city.items()} == {"Shanghai": 60, "Beijing": 20}
    by_day = x.get("/v1/token-usage", alice, group_by="day").json()
    day1 = usage["day1"].date()
    assert [(r["day"], r["requests"]) for r in by_day] == [
        (day1.isoformat(), 50),
        ((day1 + timedelta(days=1)).isoformat(), 30),
    ]
    # Every grouping sums to the same totals.
    for group in ("key", "city", "day"):
        rows = x.get("/v1/token-usage", alice, group_by=group).json()
        assert sum(r["output_tokens"] for r in rows) == 1600


def test_filters_by_service_key_and_time(usage: dict[str, Any]) -> None:
    x, alice, keys, day1 = usage["x"], usage["alice"], usage["keys"], usage["day1"]
    rows = x.get("/v1/token-usage", alice, service_id=usage["code"]).json()
    assert [r["service_name"] for r in rows] == ["code"]
    rows = x.get("/v1/token-usage", alice, key_id=keys["a2"], group_by="key").json()
    assert [(r["key_name"], r["requests"]) for r in rows] == [("a2", 20)]
    since = (day1 + timedelta(hours=1)).isoformat()
    rows = x.get("/v1/token-usage", alice, since=since).json()
    assert [(r["service_name"], r["requests"]) for r in rows] == [("chat", 30)]
    # until is exclusive: the first day's first batch ends exactly at day1.
    rows = x.get("/v1/token-usage", alice, until=day1.isoformat()).json()
    assert rows == []
    bad = x.get("/v1/token-usage", alice, since=since, until=day1.isoformat())
    assert bad.status_code == 422
    assert x.get("/v1/token-usage", alice, group_by="week").status_code == 422


def test_other_tenants_get_404_operators_pick_a_tenant(usage: dict[str, Any]) -> None:
    x, bob, keys = usage["x"], usage["bob"], usage["keys"]
    assert x.get("/v1/token-usage", bob, service_id=usage["chat"]).status_code == 404
    assert x.get("/v1/token-usage", bob, key_id=keys["a1"]).status_code == 404
    assert [r["requests"] for r in x.get("/v1/token-usage", bob).json()] == [70]
    every = x.get("/v1/token-usage", x.operator).json()
    assert sum(r["requests"] for r in every) == 150
    one = x.get("/v1/token-usage", x.operator, tenant_id=bob["X-Tenant"]).json()
    assert [r["service_name"] for r in one] == ["bobs"]
    seller = x.tenant("dc", "seller")
    assert x.get("/v1/token-usage", seller).status_code == 403


def test_csv_parses_and_matches_the_json(usage: dict[str, Any]) -> None:
    x, alice = usage["x"], usage["alice"]
    for group in ("service", "key", "city", "day"):
        r = x.get("/v1/token-usage", alice, group_by=group, format="csv")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        assert "attachment" in r.headers["content-disposition"]
        assert r.text.endswith("\r\n")  # RFC 4180 line ends
        table = list(csv.DictReader(io.StringIO(r.text, newline="")))
        rows = x.get("/v1/token-usage", alice, group_by=group).json()
        assert len(table) == len(rows)
        for c in SUMS:
            assert sum(int(t[c]) for t in table) == sum(j[c] for j in rows)
        assert sum(float(t["value_cny"]) for t in table) == pytest.approx(
            sum(j["value_cny"] for j in rows)
        )
    by_accept = x.client.get(
        "/v1/token-usage", headers={**alice, "Accept": "text/csv"}, params={"group_by": "key"}
    )
    assert by_accept.text.splitlines()[0].startswith("key_id,key_name,service_id")


def test_a_name_with_commas_and_quotes_is_quoted(sqlite_exchange: Any) -> None:
    x = sqlite_exchange
    alice = x.tenant("alice", "buyer")
    svc = _service(x, alice, 'chat, "prod"')
    key = _key(x, alice, svc, "k")
    _batch(x, x.clock.now(), [_line(svc, key)])
    r = x.get("/v1/token-usage", alice, format="csv")
    table = list(csv.reader(io.StringIO(r.text, newline="")))
    assert table[1][1] == 'chat, "prod"' and table[1][2] == "10"


def test_traffic_per_city_with_slo_attainment(exchange: Any) -> None:
    x = exchange
    alice, bob = x.tenant("alice", "buyer"), x.tenant("bob", "buyer")
    svc = _service(x, alice, "chat")

    def plan(session: Any) -> None:
        session.get(ServiceRow, svc).planned_demand_rps = {"Shanghai": 4.0, "Chengdu": 1.0}

    x.rt.db.transact(plan)
    t0 = x.clock.now()
    demand = {"service_id": svc, "prompt_tokens": 5000, "output_tokens": 800}
    _batch(x, t0 - timedelta(hours=3), traffic=[{**demand, "city": "Shanghai", "requests": 999}])
    x.clock.advance(seconds=60)
    sh = {**demand, "city": "Shanghai", "requests": 120, "slo_met": 90, "slo_total": 100}
    bj = {**demand, "city": "Beijing", "requests": 60, "rejected": 6}
    _batch(x, x.clock.now() - timedelta(seconds=30), traffic=[sh, bj], seconds=30)
    _batch(x, x.clock.now(), traffic=[{**sh, "slo_met": 10, "slo_total": 20}], seconds=30)
    r = x.get(f"/v1/services/{svc}/traffic", alice, minutes=60)
    assert r.status_code == 200, r.text
    out = r.json()
    cities = _by(out["cities"], "city")
    assert set(cities) == {"Shanghai", "Beijing", "Chengdu"}
    assert cities["Shanghai"]["requests"] == 240  # the 3-hour-old batch is outside
    assert cities["Shanghai"]["slo_attainment"] == pytest.approx(100 / 120)
    assert cities["Shanghai"]["planned_rps"] == 4.0
    assert cities["Shanghai"]["rps"] == pytest.approx(240 / 60)  # reported for 60 s
    assert cities["Beijing"]["slo_attainment"] is None and cities["Beijing"]["rejected"] == 6
    assert cities["Chengdu"]["requests"] == 0 and cities["Chengdu"]["planned_rps"] == 1.0
    total = out["total"]
    assert (total["requests"], total["prompt_tokens"]) == (300, 15_000)
    assert total["rps"] == pytest.approx(5.0) and total["planned_rps"] == 5.0
    assert out["replicas"] == []
    assert x.get(f"/v1/services/{svc}/traffic", bob).status_code == 404
    assert x.get(f"/v1/services/{svc}/traffic", alice, minutes=0).status_code == 422


def test_invoices_list_tokens_per_service_once(sqlite_exchange: Any) -> None:
    x = sqlite_exchange
    seller = x.tenant("dc", "seller")
    buyer = x.tenant("lab", "buyer", fund_cny=1000)
    x.market(seller)
    chat = _service(x, buyer, "chat")
    key = _key(x, buyer, chat, "k")
    x.post(f"/v1/services/{chat}/stop", buyer)  # its GPUs are not the point here

    def job_billed() -> None:
        job = x.job(buyer)
        x.clear()
        x.report(seller, job["id"], "running")
        x.clock.advance(hours_=1)
        x.report(seller, job["id"], "succeeded", exit_code=0)

    _batch(x, x.clock.now(), [_line(chat, key)])
    job_billed()
    first = x.post("/v1/invoices", buyer, {})
    assert first.status_code == 201, first.text
    inv = first.json()
    assert inv["lines"] == 1 and inv["total_fen"] > 0  # GPU-hours billed as before
    assert inv["tokens_from"] is None and inv["tokens_until"]
    assert inv["tokens"] == [
        {
            "service_id": chat,
            "service_name": "chat",
            "requests": 10,
            "errors": 1,
            "input_tokens": 1000,
            "cached_input_tokens": 500,
            "output_tokens": 200,
        }
    ]
    # A batch received later lands on the next invoice only, whatever its window says.
    x.clock.advance(seconds=5)
    _batch(x, x.clock.now() - timedelta(hours=2), [_line(chat, key, n=2)])
    job_billed()
    second = x.post("/v1/invoices", buyer, {}).json()
    assert second["tokens_from"] == inv["tokens_until"]
    assert [t["requests"] for t in second["tokens"]] == [20]
    assert x.get(f"/v1/invoices/{inv['id']}", buyer).json()["tokens"] == inv["tokens"]
    listed = x.get("/v1/invoices", buyer).json()
    assert sorted(sum(t["requests"] for t in i["tokens"]) for i in listed) == [10, 20]
    assert x.audit() == []
