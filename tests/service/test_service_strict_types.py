"""D5: money, counts and flags are strict in every request body.

A JSON ``true`` is not one fen, ``"100"`` is not a hundred, ``"8"`` is not eight GPUs and
``"yes"`` is not a flag: each is refused with 422, the problem naming the field. Numbers
that are prices or hours still take integers (``16`` for ``16.0``).
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

JOB: dict[str, Any] = {
    "name": "t",
    "command": "run",
    "resources": {"gpus": 8},
    "work_ref_gpu_hours": 16,
    "bid_cny_per_ref_gpu_hour": 20,
    "data": {"origin_city": "Shanghai"},
}
VOUCHER: dict[str, Any] = {"name": "v", "coverage": 0.3, "budget_fen": 10_000}
POOL: dict[str, Any] = {
    "site_id": "s1",
    "gpu": "H100",
    "gpu_count": 8,
    "reserve_cny_per_gpu_hour": 3,
}
SITE: dict[str, Any] = {"name": "s", "province": "Shanghai", "lat": 31, "lon": 121}


def _with(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """``base`` with the dotted ``path`` set to ``value`` (copied, nested dicts too)."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    *parents, leaf = path.split(".")
    node = out
    for p in parents:
        node = node[p]
    node[leaf] = value
    return out


# (who sends it, the endpoint, the body, the field it must name)
CASES: list[tuple[str, str, dict[str, Any], str]] = [
    ("operator", "/v1/tenants/{buyer}/deposits", {"amount_fen": True}, "amount_fen"),
    ("operator", "/v1/tenants/{buyer}/deposits", {"amount_fen": "100"}, "amount_fen"),
    ("operator", "/v1/vouchers", _with(VOUCHER, "budget_fen", "10000"), "budget_fen"),
    ("operator", "/v1/vouchers", _with(VOUCHER, "claim_fen", True), "claim_fen"),
    ("operator", "/v1/vouchers", _with(VOUCHER, "domestic_gpus_only", "no"), "domestic_gpus_only"),
    ("operator", "/v1/vouchers/vp-x/grants", {"tenant_id": "t", "amount_fen": "5"}, "amount_fen"),
    ("buyer", "/v1/jobs", _with(JOB, "resources.gpus", "8"), "resources.gpus"),
    ("buyer", "/v1/jobs", _with(JOB, "resources.gpus", True), "resources.gpus"),
    ("buyer", "/v1/jobs", _with(JOB, "interruptible", "yes"), "interruptible"),
    ("buyer", "/v1/jobs", _with(JOB, "interruptible", 1), "interruptible"),
    ("buyer", "/v1/jobs", _with(JOB, "work_ref_gpu_hours", "16"), "work_ref_gpu_hours"),
    ("buyer", "/v1/jobs", _with(JOB, "bid_cny_per_ref_gpu_hour", True), "bid_cny_per_ref"),
    ("seller", "/v1/sites", _with(SITE, "lat", "31"), "lat"),
    ("seller", "/v1/pools", _with(POOL, "gpu_count", "8"), "gpu_count"),
    ("seller", "/v1/sites/s1/state", {"up": "false"}, "up"),
    ("seller", "/v1/agent/reports", {"job_id": "j", "state": "failed", "exit_code": "1"}, "exit"),
    ("seller", "/v1/agent/reports", {"job_id": "j", "state": "failed", "gpu_hours": "1"}, "gpu"),
    ("seller", "/v1/agent/leases", {"limit": "10"}, "limit"),
]


@pytest.fixture(scope="module")
def parties(module_exchange: Any) -> dict[str, dict[str, str]]:
    x = module_exchange
    buyer = x.tenant("strict-lab", "buyer")
    seller = x.tenant("strict-dc", "seller")
    return {"operator": x.operator, "buyer": buyer, "seller": seller}


@pytest.mark.parametrize(
    ("who", "path", "body", "field"),
    CASES,
    ids=[f"{i}-{c[1].rsplit('/', 1)[-1]}-{c[3]}" for i, c in enumerate(CASES)],
)
def test_a_lax_value_is_refused_naming_its_field(
    module_exchange: Any,
    parties: dict[str, dict[str, str]],
    who: str,
    path: str,
    body: dict[str, Any],
    field: str,
) -> None:
    headers = {**parties[who], "Idempotency-Key": uuid.uuid4().hex}
    url = path.replace("{buyer}", parties["buyer"]["X-Tenant"])
    r = module_exchange.client.post(url, headers=headers, json=body)
    assert r.status_code == 422, r.text
    problem = r.json()
    assert r.headers["content-type"].startswith("application/problem+json")
    assert any(field in e["field"] for e in problem["errors"]), problem


def test_integers_still_do_for_prices_and_hours(
    module_exchange: Any, parties: dict[str, dict[str, str]]
) -> None:
    r = module_exchange.post("/v1/jobs", parties["buyer"], JOB)  # 16 and 20 are ints
    assert r.status_code == 201, r.text
    assert r.json()["work_ref_gpu_hours"] == 16.0
