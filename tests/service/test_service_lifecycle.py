"""The job lifecycle end to end through the API: placement with the engine's reason,
agent reports, money held, captured and released, preemption, deadlines, cancel.

Market used throughout (unless a test says otherwise): one Shanghai site with an H100
pool of 2 nodes × 8 GPUs at a reserve of 10 yuan/GPU-h; fee 2%. A job of 8 GPUs and 16
reference GPU-hours runs 16 / (8 × 1.0) = 2 h; at price 10 the seller gets
10 × 8 × 2 = 160 yuan = 16,000 fen, the fee is 320 fen, the buyer holds 16,320 fen.
"""

from __future__ import annotations

from typing import Any

import pytest

HELD_FEN = 16_320  # 16,000 seller + 320 fee


def _setup(x: Any) -> tuple[dict[str, str], dict[str, str], str]:
    seller = x.tenant("dc", "seller")
    buyer = x.tenant("lab", "buyer", fund_cny=1000)
    pool = x.market(seller)
    return seller, buyer, pool


def test_placed_run_succeeded_bills_delivered_time(exchange: Any) -> None:
    x = exchange
    seller, buyer, pool = _setup(x)
    job = x.job(buyer)
    assert job["state"] == "pending"

    summary = x.clear()
    assert summary.jobs_placed == 1
    got = x.get(f"/v1/jobs/{job['id']}", buyer).json()
    assert (got["state"], got["pool_id"]) == ("placed", pool)
    # The placement reason is the engine's own text, unchanged.
    assert got["reason"].startswith(f"{pool}: price 10.00 yuan/GPU-h (reserve 10.00")
    w = x.wallet(buyer)
    assert (w["wallet_fen"], w["escrow_fen"]) == (100_000 - HELD_FEN, HELD_FEN)

    leases = x.post("/v1/agent/leases", seller, {}).json()
    assert [le["job_id"] for le in leases] == [job["id"]]
    assert leases[0]["gpus"] == 8 and leases[0]["command"] == "python train.py"
    assert x.post("/v1/agent/leases", seller, {}).json() == []  # leased once

    assert x.report(seller, job["id"], "running").json()["state"] == "running"
    x.clock.advance(hours_=1.0)
    done = x.report(seller, job["id"], "succeeded", exit_code=0).json()
    assert (done["state"], done["reason"], done["exit_code"]) == ("succeeded", "work done", 0)

    # Ran 1 of 2 planned hours: half of each leg is captured, the rest released.
    w = x.wallet(buyer)
    assert w["escrow_fen"] == 0
    assert w["wallet_fen"] == 100_000 - 8_160  # 8,000 seller + 160 fee
    assert x.wallet(seller)["receivable_fen"] == 8_000
    usage = x.get("/v1/usage", buyer).json()
    assert [(u["gpu_hours"], u["buyer_fen"]) for u in usage] == [(8.0, 8_160)]  # 8 GPUs × 1 h
    events = x.get(f"/v1/jobs/{job['id']}/events", buyer).json()
    assert [(e["from_state"], e["to_state"]) for e in events] == [
        ("pending", "pending"),
        ("pending", "placed"),
        ("placed", "running"),
        ("running", "succeeded"),
    ]
    assert x.audit() == []


def test_reported_gpu_hours_are_billed_and_capped_at_the_plan(exchange: Any) -> None:
    x = exchange
    seller, buyer, _ = _setup(x)
    a, b = x.job(buyer), x.job(buyer, name="b")
    x.clear()
    for j in (a, b):
        x.report(seller, j["id"], "running")
    x.clock.advance(hours_=3.0)  # 8 GPUs × 3 h = 24 GPU-hours could have passed
    # 4 GPU-hours of 16 planned → a quarter: 4,000 + 80 fen.
    x.report(seller, a["id"], "failed", exit_code=137, gpu_hours=4.0)
    # 20 GPU-hours reported (of the 24 that passed), 16 planned: billed as planned.
    x.report(seller, b["id"], "succeeded", exit_code=0, gpu_hours=20.0)
    failed = x.get(f"/v1/jobs/{a['id']}", buyer).json()
    assert failed["state"] == "failed" and failed["reason"].endswith("(exit code 137)")
    assert x.wallet(buyer)["wallet_fen"] == 100_000 - 4_080 - HELD_FEN
    assert x.audit() == []


@pytest.mark.parametrize(
    ("start", "hours_run", "charged_fen"),
    [
        (False, 0.0, 0),  # placed, never started: nothing delivered
        (True, 0.5, 4_080),  # a quarter of 2 h: 4,000 + 80
    ],
)
def test_cancel_bills_only_delivered_time(
    sqlite_exchange: Any, start: bool, hours_run: float, charged_fen: int
) -> None:
    x = sqlite_exchange
    seller, buyer, _ = _setup(x)
    job = x.job(buyer)
    x.clear()
    if start:
        x.report(seller, job["id"], "running")
    x.clock.advance(hours_=hours_run)
    out = x.post(f"/v1/jobs/{job['id']}/cancel", buyer).json()
    assert (out["state"], out["reason"]) == ("cancelled", "cancelled by buyer")
    assert x.wallet(buyer)["wallet_fen"] == 100_000 - charged_fen
    assert x.wallet(buyer)["escrow_fen"] == 0
    # Finished work cannot be cancelled again: 409 with the lifecycle's message.
    again = x.post(f"/v1/jobs/{job['id']}/cancel", buyer)
    assert again.status_code == 409
    assert "cannot go from cancelled to cancelled" in again.json()["detail"]
    assert x.audit() == []


def test_cancel_pending_job(sqlite_exchange: Any) -> None:
    x = sqlite_exchange
    buyer = x.tenant("lab", "buyer", fund_cny=10)
    job = x.job(buyer)
    assert x.post(f"/v1/jobs/{job['id']}/cancel", buyer).json()["state"] == "cancelled"
    assert x.wallet(buyer)["wallet_fen"] == 1_000


def test_preempted_job_keeps_checkpoints_and_is_placed_again(exchange: Any) -> None:
    x = exchange
    seller, buyer, _pool = _setup(x)
    job = x.job(buyer, checkpoint={"every_h": 0.5}, interruptible=True)
    x.clear()
    x.report(seller, job["id"], "running")
    x.clock.advance(hours_=1.2)
    out = x.report(seller, job["id"], "preempted", reason="node lost").json()
    # Back to pending; 1.2 h ran, checkpoints every 0.5 h keep 1.0 h × 8 GPUs × 1.0 = 8.
    assert out["state"] == "pending"
    assert out["done_ref_gpu_hours"] == pytest.approx(8.0)
    events = x.get(f"/v1/jobs/{job['id']}/events", buyer).json()
    assert [(e["to_state"], e["reason"]) for e in events[-2:]] == [
        ("preempted", "node lost"),
        ("pending", "waiting to be placed again"),
    ]
    # 1.2 of 2 h delivered: 0.6 × 16,320 = 9,792 fen billed.
    assert x.wallet(buyer)["wallet_fen"] == 100_000 - 9_792
    x.clear()
    again = x.get(f"/v1/jobs/{job['id']}/why", buyer).json()
    assert again["state"] == "placed"
    # The remaining 8 reference GPU-hours take 1 h on 8 H100s: 8,000 + 160 fen held.
    assert [p["held_buyer_fen"] for p in again["placements"] if p["active"]] == [8_160]
    assert x.audit() == []


def test_deadline_passes_with_the_engines_reason(sqlite_exchange: Any) -> None:
    x = sqlite_exchange
    seller = x.tenant("dc", "seller")
    buyer = x.tenant("lab", "buyer", fund_cny=1000)
    x.market(seller, reserve=30.0)  # 30 × 1.02 = 30.6 per ref GPU-h > bid 20
    job = x.job(buyer, deadline_h=3.0)  # runs 2 h: fits the deadline, not the bid
    x.clear()
    why = x.get(f"/v1/jobs/{job['id']}/why", buyer).json()
    assert why["state"] == "pending"
    assert why["reasons"] and why["reasons"][0].startswith("price: bid 20.00 <")
    x.clock.advance(hours_=3.5)
    x.clear()
    got = x.get(f"/v1/jobs/{job['id']}", buyer).json()
    assert got["state"] == "failed"
    assert got["reason"].startswith("deadline passed before a pool could take it: price:")


def test_work_waits_while_the_wallet_cannot_cover_its_bid(sqlite_exchange: Any) -> None:
    x = sqlite_exchange
    seller = x.tenant("dc", "seller")
    x.market(seller)
    buyer = x.tenant("lab", "buyer", fund_cny=100)  # 100 yuan < 16 × 20 = 320 at the bid
    job = x.job(buyer)
    assert x.clear().jobs_placed == 0
    why = x.get(f"/v1/jobs/{job['id']}/why", buyer).json()
    assert why["reasons"][0].startswith("funds: wallet has 100.00 yuan free")
    x.deposit(x.tenants["lab"], 30_000)
    assert x.clear().jobs_placed == 1


def test_capacity_is_shared_across_rounds(sqlite_exchange: Any) -> None:
    x = sqlite_exchange
    seller = x.tenant("dc", "seller")
    buyer = x.tenant("lab", "buyer", fund_cny=10_000)
    x.market(seller, nodes=1)  # 8 GPUs
    a = x.job(buyer)
    assert x.clear().jobs_placed == 1
    b = x.job(buyer, name="second")
    assert x.clear().jobs_placed == 0  # the node is held by the first job
    assert x.get(f"/v1/jobs/{b['id']}", buyer).json()["state"] == "pending"
    x.report(seller, a["id"], "running")
    x.report(seller, a["id"], "succeeded", exit_code=0)
    assert x.clear().jobs_placed == 1


def test_site_outage_preempts_its_work(sqlite_exchange: Any) -> None:
    x = sqlite_exchange
    seller, buyer, pool = _setup(x)
    job = x.job(buyer)
    x.clear()
    x.report(seller, job["id"], "running")
    site = pool.split("/")[0]
    r = x.post(f"/v1/sites/{site}/state", seller, {"up": False, "reason": "power cut"})
    assert r.status_code == 200 and r.json()["up"] is False
    got = x.get(f"/v1/jobs/{job['id']}", buyer).json()
    assert got["state"] == "pending"
    assert x.clear().jobs_placed == 0  # the only site is down
    x.post(f"/v1/sites/{site}/state", seller, {"up": True})
    assert x.clear().jobs_placed == 1
    assert x.audit() == []


def test_service_replicas_placed_billed_per_horizon_and_stopped(exchange: Any) -> None:
    x = exchange
    _seller, buyer, pool = _setup(x)
    spec = {
        "kind": "service",
        "name": "chat",
        "model": "Llama-3.1-8B",
        "demand_rps": {"Shanghai": 10},
        "tokens": {"prompt": 1000, "output": 250},
        "slo": {"ttft_ms": 2000, "tpot_ms": 100},
        "bid_cny_per_m_output_tokens": 20,
    }
    svc = x.post("/v1/services", buyer, spec).json()
    assert x.clear().services_placed == 1
    got = x.get(f"/v1/services/{svc['id']}", buyer).json()
    assert got["served_rps"] == pytest.approx(10.0)
    assert got["replicas"] and all(r["pool_id"] == pool for r in got["replicas"])
    held = x.wallet(buyer)["escrow_fen"]
    assert held > 0
    # After its 0.25 h horizon the service is billed in full and placed again.
    x.clock.advance(hours_=0.3)
    x.clear()
    assert x.wallet(buyer)["wallet_fen"] == 100_000 - held - x.wallet(buyer)["escrow_fen"]
    stopped = x.post(f"/v1/services/{svc['id']}/stop", buyer).json()
    assert (stopped["state"], stopped["replicas"]) == ("stopped", [])
    assert x.wallet(buyer)["escrow_fen"] == 0
    assert x.audit() == []


def test_vouchers_pay_their_share_within_the_grant(exchange: Any) -> None:
    x = exchange
    _seller, buyer, _ = _setup(x)
    prog = x.post(
        "/v1/vouchers",
        x.operator,
        {"name": "SH 2025", "coverage": 0.3, "budget_fen": 1_000_000, "claim_fen": 10_000},
    ).json()
    assert x.post(f"/v1/vouchers/{prog['id']}/redeem", buyer).status_code == 201
    # Bid 8 < 10.2 per ref GPU-h (price with fee); with the voucher 8 / (1 − 0.3) = 11.4.
    job = x.job(buyer, bid_cny_per_ref_gpu_hour=8.0)
    x.clear()
    placed = x.get(f"/v1/jobs/{job['id']}/why", buyer).json()
    assert placed["state"] == "placed"
    p = placed["placements"][0]
    assert p["voucher_program_id"] == prog["id"]
    assert p["held_voucher_fen"] == 4_896  # floor(0.3 × 16,320)
    assert p["held_buyer_fen"] == HELD_FEN - 4_896
    assert x.wallet(buyer)["grants"][0]["balance_fen"] == 10_000 - 4_896
    x.post(f"/v1/jobs/{job['id']}/cancel", buyer)  # never started: everything released
    assert x.wallet(buyer)["grants"][0]["balance_fen"] == 10_000
    assert x.wallet(buyer)["wallet_fen"] == 100_000
    assert x.audit() == []


def test_a_grant_too_small_for_the_job_is_not_drawn(sqlite_exchange: Any) -> None:
    x = sqlite_exchange
    _seller, buyer, _ = _setup(x)
    prog = x.post(
        "/v1/vouchers",
        x.operator,
        {"name": "tiny", "coverage": 0.3, "budget_fen": 1_000_000, "claim_fen": 3_000},
    ).json()
    x.post(f"/v1/vouchers/{prog['id']}/redeem", buyer)
    job = x.job(buyer, bid_cny_per_ref_gpu_hour=8.0)
    assert x.clear().jobs_placed == 0
    why = x.get(f"/v1/jobs/{job['id']}/why", buyer).json()
    assert why["reasons"][0].startswith(f"price: voucher {prog['id']} has no budget left")
    assert x.wallet(buyer)["grants"][0]["balance_fen"] == 3_000


def test_invoice_covers_each_usage_record_once(sqlite_exchange: Any) -> None:
    x = sqlite_exchange
    seller, buyer, _ = _setup(x)
    job = x.job(buyer)
    x.clear()
    x.report(seller, job["id"], "running")
    x.clock.advance(hours_=2)
    x.report(seller, job["id"], "succeeded", exit_code=0)
    inv = x.post("/v1/invoices", buyer, {})
    assert inv.status_code == 201
    assert (inv.json()["lines"], inv.json()["total_fen"]) == (1, HELD_FEN)
    assert x.post("/v1/invoices", buyer, {}).status_code == 409  # nothing left to invoice
    assert len(x.get("/v1/invoices", buyer).json()) == 1
