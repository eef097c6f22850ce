"""Idempotency-Key: a retry returns the first result and never applies twice."""

from __future__ import annotations

import threading
from typing import Any

JOB = {
    "name": "t",
    "command": "run",
    "resources": {"gpus": 8},
    "work_ref_gpu_hours": 16,
    "bid_cny_per_ref_gpu_hour": 20,
    "data": {"origin_city": "Shanghai"},
}


def test_retry_returns_the_first_result(exchange: Any) -> None:
    x = exchange
    buyer = x.tenant("lab", "buyer", fund_cny=100)
    first = x.post("/v1/jobs", buyer, JOB, key="k-1")
    again = x.post("/v1/jobs", buyer, JOB, key="k-1")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert len(x.get("/v1/jobs", buyer).json()) == 1


def test_deposit_retried_is_credited_once(exchange: Any) -> None:
    x = exchange
    x.tenant("lab", "buyer")
    tid = x.tenants["lab"]
    for _ in range(3):
        r = x.post(f"/v1/tenants/{tid}/deposits", x.operator, {"amount_fen": 500}, key="dep-1")
        assert r.json()["wallet_fen"] == 500
    assert x.audit() == []


def test_same_key_for_another_request_is_refused(sqlite_exchange: Any) -> None:
    x = sqlite_exchange
    buyer = x.tenant("lab", "buyer")
    x.post("/v1/jobs", buyer, JOB, key="k-2")
    r = x.post("/v1/jobs", buyer, {**JOB, "name": "other"}, key="k-2")
    assert r.status_code == 422
    assert "already used for a different request" in r.json()["detail"]


def test_keys_belong_to_one_account(sqlite_exchange: Any) -> None:
    x = sqlite_exchange
    a, b = x.tenant("a", "buyer"), x.tenant("b", "buyer")
    ra = x.post("/v1/jobs", a, JOB, key="shared")
    rb = x.post("/v1/jobs", b, JOB, key="shared")
    assert ra.json()["id"] != rb.json()["id"]  # b never sees a's response


def test_missing_key_is_a_precondition(sqlite_exchange: Any) -> None:
    x = sqlite_exchange
    buyer = x.tenant("lab", "buyer")
    r = x.client.post("/v1/jobs", headers=buyer, json=JOB)
    assert r.status_code == 428
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "Idempotency-Key" in r.json()["detail"]
    bad = x.client.post("/v1/jobs", headers={**buyer, "Idempotency-Key": "a b\t" * 60}, json=JOB)
    assert bad.status_code in (400, 422)


def test_a_failed_request_leaves_no_effect_and_can_be_retried(sqlite_exchange: Any) -> None:
    x = sqlite_exchange
    buyer = x.tenant("lab", "buyer")
    missing = {**JOB, "data": {"origin_city": "Atlantis"}}
    assert x.post("/v1/jobs", buyer, missing, key="k-3").status_code == 422
    assert x.get("/v1/jobs", buyer).json() == []
    redeem = x.post("/v1/vouchers/vp-none/redeem", buyer, key="k-4")
    assert redeem.status_code == 404


def test_concurrent_retries_apply_once(exchange: Any) -> None:
    x = exchange
    buyer = x.tenant("lab", "buyer")
    results: list[int] = []

    def go() -> None:
        r = x.post("/v1/jobs", buyer, JOB, key="burst")
        results.append(r.status_code)

    threads = [threading.Thread(target=go) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [201] * 8
    assert len(x.get("/v1/jobs", buyer).json()) == 1
