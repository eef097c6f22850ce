"""Who may do what: a matrix of role × endpoint, and tenant isolation."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

JOB = {
    "name": "t",
    "command": "run",
    "resources": {"gpus": 8},
    "work_ref_gpu_hours": 16,
    "bid_cny_per_ref_gpu_hour": 20,
    "data": {"origin_city": "Shanghai"},
}
SERVICE = {
    "name": "s",
    "model": "Llama-3.1-8B",
    "demand_rps": {"Shanghai": 1},
    "tokens": {"prompt": 100, "output": 10},
    "slo": {"ttft_ms": 2000, "tpot_ms": 100},
    "bid_cny_per_m_output_tokens": 5,
}
SITE = {"name": "x", "province": "Shanghai", "lat": 31.0, "lon": 121.0}

# (method, path, body, who may: a set of roles). "ok" means anything but 401/403.
MATRIX: list[tuple[str, str, Any, set[str]]] = [
    ("GET", "/v1/me", None, {"buyer", "seller", "operator"}),
    ("GET", "/v1/tenants", None, {"operator"}),
    ("POST", "/v1/tenants", {"name": "new-t"}, {"operator"}),
    ("POST", "/v1/tenants/{tenant}/deposits", {"amount_fen": 1}, {"operator"}),
    ("POST", "/v1/tenants/{tenant}/accounts", {"name": "n", "role": "buyer"}, {"operator"}),
    ("GET", "/v1/wallet", None, {"buyer", "seller", "operator"}),
    ("POST", "/v1/tokens", {}, {"buyer", "seller", "operator"}),
    ("POST", "/v1/jobs", JOB, {"buyer"}),
    ("GET", "/v1/jobs", None, {"buyer", "operator"}),
    ("POST", "/v1/services", SERVICE, {"buyer"}),
    ("GET", "/v1/services", None, {"buyer", "operator"}),
    ("POST", "/v1/sites", SITE, {"seller"}),
    ("GET", "/v1/sites", None, {"seller", "operator"}),
    ("GET", "/v1/pools", None, {"seller", "operator"}),
    ("GET", "/v1/offers", None, {"buyer", "seller", "operator"}),
    ("POST", "/v1/agent/leases", {}, {"seller", "operator"}),
    ("POST", "/v1/agent/reports", {"job_id": "job-x", "state": "running"}, {"seller", "operator"}),
    ("POST", "/v1/vouchers", {"name": "v", "coverage": 0.2, "budget_fen": 100}, {"operator"}),
    ("GET", "/v1/vouchers", None, {"buyer", "operator"}),
    (
        "POST",
        "/v1/vouchers/{program}/grants",
        {"tenant_id": "{tenant}", "amount_fen": 1},
        {"operator"},
    ),
    ("POST", "/v1/vouchers/{program}/redeem", {}, {"buyer"}),
    ("GET", "/v1/invoices", None, {"buyer", "operator"}),
    ("POST", "/v1/invoices", {}, {"buyer"}),
    ("GET", "/v1/usage", None, {"buyer", "seller", "operator"}),
    ("GET", "/v1/allocations", None, {"buyer", "seller", "operator"}),
    ("GET", "/v1/market/prices", None, {"buyer", "seller", "operator"}),
    ("GET", "/v1/market/rounds", None, {"buyer", "seller", "operator"}),
    ("POST", "/v1/market/rounds", None, {"operator"}),
    ("GET", "/v1/events", None, {"buyer", "seller", "operator"}),
    ("GET", "/v1/ledger/accounts", None, {"operator"}),
    ("GET", "/v1/ledger/audit", None, {"operator"}),
]


@pytest.fixture(scope="module")
def roles(module_exchange: Any) -> dict[str, Any]:
    x = module_exchange
    out = {
        "buyer": x.tenant("b", "buyer", fund_cny=10),
        "seller": x.tenant("s", "seller"),
        "operator": x.operator,
        "anonymous": {},
    }
    prog = x.post(
        "/v1/vouchers",
        x.operator,
        {"name": "p", "coverage": 0.2, "budget_fen": 10**6, "claim_fen": 10},
    ).json()
    return {"x": x, "who": out, "tenant": x.tenants["b"], "program": prog["id"]}


def _fill(value: Any, ctx: dict[str, Any]) -> Any:
    if isinstance(value, str):
        return value.replace("{tenant}", ctx["tenant"]).replace("{program}", ctx["program"])
    if isinstance(value, dict):
        return {k: _fill(v, ctx) for k, v in value.items()}
    return value


@pytest.mark.parametrize(
    ("method", "path", "body", "allowed"), MATRIX, ids=[f"{m} {p}" for m, p, _, _ in MATRIX]
)
def test_role_matrix(
    roles: dict[str, Any], method: str, path: str, body: Any, allowed: set[str]
) -> None:
    x = roles["x"]
    for role, headers in roles["who"].items():
        h = {**headers, "Idempotency-Key": uuid.uuid4().hex}
        r = x.client.request(method, _fill(path, roles), headers=h, json=_fill(body, roles))
        if role == "anonymous":
            assert r.status_code == 401, (role, r.text)
        elif role in allowed:
            assert r.status_code not in (401, 403), (role, r.status_code, r.text)
            assert r.status_code < 500
        else:
            assert r.status_code == 403, (role, r.status_code, r.text)
            assert r.json()["type"] == "urn:suanli:problem:forbidden"


def test_buyers_never_see_each_others_work(exchange: Any) -> None:
    x = exchange
    a, b = x.tenant("a", "buyer", fund_cny=1000), x.tenant("b", "buyer")
    job = x.job(a)
    assert x.get(f"/v1/jobs/{job['id']}", b).status_code == 404
    assert x.get(f"/v1/jobs/{job['id']}/why", b).status_code == 404
    assert x.get(f"/v1/jobs/{job['id']}/events", b).status_code == 404
    assert x.post(f"/v1/jobs/{job['id']}/cancel", b).status_code == 404
    assert x.get("/v1/jobs", b).json() == []
    assert all(
        e["tenant_id"] is None or e["tenant_id"] == x.tenants["b"]
        for e in x.get("/v1/events", b).json()
    )
    assert [j["id"] for j in x.get("/v1/jobs", x.operator).json()] == [job["id"]]


def test_sellers_never_touch_each_others_pools_or_work(exchange: Any) -> None:
    x = exchange
    s1, s2 = x.tenant("s1", "seller"), x.tenant("s2", "seller")
    buyer = x.tenant("lab", "buyer", fund_cny=1000)
    pool = x.market(s1)
    site = pool.split("/")[0]
    assert (
        x.client.patch(
            f"/v1/pools/{pool}", headers=s2, json={"reserve_cny_per_gpu_hour": 1}
        ).status_code
        == 404
    )
    assert x.get(f"/v1/pools/{pool}", s2).status_code == 404
    assert x.get(f"/v1/sites/{site}", s2).status_code == 404
    assert x.post(f"/v1/sites/{site}/state", s2, {"up": False}).status_code == 404
    assert (
        x.client.post(
            "/v1/offers", headers=s2, json={"pool_id": pool, "reserve_cny_per_gpu_hour": 1}
        ).status_code
        == 404
    )
    job = x.job(buyer)
    x.clear()
    assert x.post("/v1/agent/leases", s2, {}).json() == []
    assert x.report(s2, job["id"], "running").status_code == 404
    assert x.report(s1, job["id"], "running").status_code == 200
    assert x.get("/v1/allocations", s2).json() == []
    assert len(x.get("/v1/allocations", s1).json()) == 1


def test_revoked_tokens_stop_working(sqlite_exchange: Any) -> None:
    x = sqlite_exchange
    buyer = x.tenant("lab", "buyer")
    extra = x.client.post("/v1/tokens", headers=buyer, json={"label": "ci"}).json()
    h = {"Authorization": f"Bearer {extra['token']}"}
    assert x.get("/v1/me", h).status_code == 200
    assert x.client.delete(f"/v1/tokens/{extra['id']}", headers=buyer).status_code == 204
    assert x.get("/v1/me", h).status_code == 401
    assert x.get("/v1/me", {"Authorization": "Bearer sl_nope"}).status_code == 401
    assert x.get("/v1/me", {"Authorization": "Basic abc"}).status_code == 401
