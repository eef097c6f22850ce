"""D4: a seller bills no more GPU time than the exchange saw pass.

Market: one Shanghai site with an H100 pool of 2 nodes × 8 GPUs at a reserve of 10
yuan/GPU-h. A job of 8 GPUs and 16 reference GPU-hours is planned for 16 / 8 = 2 h; at
10 yuan the buyer holds 16,000 + 2% fee = 16,320 fen.

The bound: 8 GPUs × (the time since the exchange handed out the lease, or accepted the
``running`` report of work it never leased, + REPORT_TOLERANCE_S). A report past it is
422 naming ``gpu_hours``, logged as an event, and bills nothing; within it, at most the
GPU time the exchange saw is billed and the usage record never ends in the future.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from suanli.service.settlement import REPORT_TOLERANCE_S

FUNDS_FEN = 100_000
HELD_FEN = 16_320


def _setup(x: Any) -> tuple[dict[str, str], dict[str, str]]:
    seller = x.tenant("dc", "seller")
    buyer = x.tenant("lab", "buyer", fund_cny=FUNDS_FEN / 100)
    x.market(seller)
    return seller, buyer


def _refusal_events(x: Any, who: dict[str, str]) -> list[dict[str, Any]]:
    events = x.get("/v1/events", who, limit=1000).json()
    return [e for e in events if e["kind"] == "report-refused"]


def test_a_report_of_more_gpu_time_than_passed_is_refused_and_logged(exchange: Any) -> None:
    x = exchange
    seller, buyer = _setup(x)
    job = x.job(buyer)
    x.clear()
    assert x.report(seller, job["id"], "running").status_code == 200
    x.clock.advance(seconds=1)
    r = x.report(seller, job["id"], "succeeded", exit_code=0, gpu_hours=10_000_000)
    # 8 GPUs × (1 s + 60 s) = 488 GPU-seconds ≈ 0.1356 GPU-hours at most.
    assert r.status_code == 422, r.text
    problem = r.json()
    assert problem["type"].endswith(":impossible-report")
    [err] = problem["errors"]
    assert err["field"] == "body.gpu_hours"
    bound = 8 * (1 + REPORT_TOLERANCE_S) / 3600
    assert f"{bound:.4f}" in err["reason"] and f"{bound:.4f}" in problem["detail"]
    # Nothing billed, nothing moved: the job still runs, its money still held.
    assert x.get(f"/v1/jobs/{job['id']}", buyer).json()["state"] == "running"
    w = x.wallet(buyer)
    assert (w["wallet_fen"], w["escrow_fen"]) == (FUNDS_FEN - HELD_FEN, HELD_FEN)
    assert x.get("/v1/usage", buyer).json() == []
    # The operator (and the seller) can read why in the event log.
    [event] = _refusal_events(x, x.operator)
    assert event["data"]["gpu_hours"] == 10_000_000 and event["data"]["job_id"] == job["id"]
    assert _refusal_events(x, seller) == [event]
    assert _refusal_events(x, buyer) == []
    # The honest report that follows is applied.
    x.clock.advance(hours_=1)
    done = x.report(seller, job["id"], "succeeded", exit_code=0, gpu_hours=8.0)
    assert done.json()["state"] == "succeeded"
    assert x.audit() == []


@pytest.mark.parametrize("state", ["failed", "preempted"])
def test_the_bound_holds_for_every_final_state(sqlite_exchange: Any, state: str) -> None:
    x = sqlite_exchange
    seller, buyer = _setup(x)
    job = x.job(buyer)
    x.clear()
    x.report(seller, job["id"], "running")
    x.clock.advance(hours_=0.5)
    # 8 GPUs × 0.5 h = 4 GPU-hours passed; 5 is past the bound (4 + 8 × 60 s ≈ 4.13).
    r = x.report(seller, job["id"], state, exit_code=1, gpu_hours=5.0)
    assert r.status_code == 422, r.text
    assert x.report(seller, job["id"], state, exit_code=1, gpu_hours=4.0).status_code == 200
    [use] = x.get("/v1/usage", buyer).json()
    assert use["gpu_hours"] == pytest.approx(4.0)


def test_within_the_tolerance_only_the_time_seen_is_billed_and_usage_ends_by_now(
    sqlite_exchange: Any,
) -> None:
    x = sqlite_exchange
    seller, buyer = _setup(x)
    job = x.job(buyer)
    x.clear()
    x.report(seller, job["id"], "running")
    x.clock.advance(seconds=10)
    # 8 GPUs × 40 s: more than the 10 s seen, less than 10 s + the tolerance.
    r = x.report(seller, job["id"], "succeeded", exit_code=0, gpu_hours=8 * 40 / 3600)
    assert r.status_code == 200, r.text
    [use] = x.get("/v1/usage", buyer).json()
    assert use["gpu_hours"] == pytest.approx(8 * 10 / 3600)  # the 10 s the exchange saw
    assert datetime.fromisoformat(use["to_at"]) <= x.clock.now()
    assert datetime.fromisoformat(use["from_at"]) <= datetime.fromisoformat(use["to_at"])


def _leased(x: Any, seller: dict[str, str]) -> dict[str, Any]:
    [lease] = x.post("/v1/agent/leases", seller, {"kinds": ["job", "replica"]}).json()
    return lease  # type: ignore[no-any-return]


def _report(x: Any, seller: dict[str, str], lease: dict[str, Any], state: str, **kw: Any) -> Any:
    body = {"allocation_id": lease["allocation_id"], "lease_token": lease["lease_token"]}
    return x.post("/v1/agent/reports", seller, {**body, "state": state, **kw})


def test_leased_work_is_bounded_from_the_lease_even_if_running_arrives_late(
    sqlite_exchange: Any,
) -> None:
    """An agent's ``running`` report can sit in its outbox while the exchange is away:
    the work ran from about when the lease was handed out, and may bill that time."""
    x = sqlite_exchange
    seller, buyer = _setup(x)
    x.job(buyer)
    x.clear()
    lease = _leased(x, seller)
    x.clock.advance(hours_=1)
    assert _report(x, seller, lease, "running").status_code == 200
    # 8 GPUs × 1 h since the lease: 8 GPU-hours could have passed, 9 could not.
    assert _report(x, seller, lease, "succeeded", exit_code=0, gpu_hours=9.0).status_code == 422
    ok = _report(x, seller, lease, "succeeded", exit_code=0, gpu_hours=8.0)
    assert ok.status_code == 200, ok.text
    [use] = x.get("/v1/usage", buyer).json()
    assert use["gpu_hours"] == pytest.approx(8.0)
    assert datetime.fromisoformat(use["to_at"]) <= x.clock.now()


def test_a_replica_report_is_bounded_too(sqlite_exchange: Any) -> None:
    x = sqlite_exchange
    seller, buyer = _setup(x)
    svc = x.post(
        "/v1/services",
        buyer,
        {
            "name": "chat",
            "model": "Llama-3.1-8B",
            "demand_rps": {"Shanghai": 2},
            "tokens": {"prompt": 500, "output": 250},
            "slo": {"ttft_ms": 2000, "tpot_ms": 100},
            "bid_cny_per_m_output_tokens": 50,
            "command": "serve --port $PORT",
        },
    ).json()
    x.clear()
    lease = _leased(x, seller)
    assert lease["item_id"] == svc["id"]
    _report(x, seller, lease, "running", endpoint="http://10.0.0.5:8123")
    x.clock.advance(seconds=1)
    r = _report(x, seller, lease, "failed", exit_code=1, gpu_hours=1000.0)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == "body.gpu_hours"
    [event] = _refusal_events(x, x.operator)
    assert event["data"]["service_id"] == svc["id"]
