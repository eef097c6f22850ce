"""Compute vouchers (算力券): coverage, budgets, per-buyer caps, eligibility, validity.

The base market: one pool at the Yangtze demo zone (Shanghai), H100, reserve 10 yuan per
GPU-hour, speed 1; jobs of 8 GPUs × 80 reference GPU-hours (10 h). A voucher covering
share s lets a bid b pay up to b / (1 − s): bid 8 with s = 0.3 is worth 8 / 0.7 ≈ 11.43
per reference GPU-hour > 10, bid 8 alone is not.

A voucher-backed job of this shape draws 30% of its bill, and the bill is at least the
reserve's 10 × 8 × 10 = 800 yuan: every draw is ≥ 24,000 fen. The budget and cap cases
below count in those draws, so they hold whatever the engine reserves while it places.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest

from suanli.domain import Fabric
from suanli.market.decision import Decision, ReasonCode
from suanli.market.snapshot import VoucherProgram

YZ = "yangtze-demo-zone"


def program(**kw: Any) -> VoucherProgram:
    args: dict[str, Any] = {"id": "sh", "name": "Shanghai 2025", "coverage": 0.3, "budget_cny": 1e6}
    return VoucherProgram(**{**args, **kw})


def draws_by_buyer(d: Decision) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = defaultdict(int)
    for p in d.jobs:
        if p.payment.voucher_id is not None:
            out[(p.payment.voucher_id, p.buyer)] += p.payment.voucher_fen
    return dict(out)


@pytest.mark.parametrize(
    ("fee_rate", "seller", "fee", "voucher", "buyer"),
    [
        # 10 yuan × 8 GPUs × 10 h = 80,000 fen; voucher floor(80,000 × 0.3) = 24,000.
        (0.0, 80_000, 0, 24_000, 56_000),
        # Fee round(80,000 × 0.02) = 1,600; total 81,600; voucher floor(81,600 × 0.3) = 24,480.
        # Still worth it: 8 / 0.7 / 1.02 ≈ 11.2 > 10.
        (0.02, 80_000, 1_600, 24_480, 57_120),
    ],
)
def test_voucher_lets_a_low_bid_clear(
    fee_rate: float,
    seller: int,
    fee: int,
    voucher: int,
    buyer: int,
    make_pool,
    make_job,
    make_snapshot,
    clear,
) -> None:
    snap = make_snapshot(
        [make_pool(YZ, free_gpus=16)],
        [make_job("j", bid=8.0)],
        vouchers=[program()],
        fee_rate=fee_rate,
    )
    d = clear(snap)
    (job,) = d.jobs
    assert job.price_cny_per_gpu_hour == 10.0  # room for all: price = reserve
    pay = job.payment
    assert (pay.seller_fen, pay.fee_fen, pay.voucher_fen, pay.buyer_fen) == (
        seller,
        fee,
        voucher,
        buyer,
    )
    assert pay.voucher_id == "sh"
    assert pay.buyer_fen <= 8 * 80 * 100  # the buyer's own bid × W = 640 yuan
    assert d.voucher_draws_fen == {"sh": voucher}


def test_without_the_voucher_the_low_bid_stays_out(
    make_pool, make_job, make_snapshot, clear
) -> None:
    snap = make_snapshot([make_pool(YZ)], [make_job("j", bid=8.0)])
    d = clear(snap)
    assert d.jobs == ()
    assert [r.code for r in d.unplaced[0].reasons] == [ReasonCode.PRICE]


def test_price_reason_counts_the_voucher(make_pool, make_job, make_snapshot, clear) -> None:
    # Bid 6 < 10 · (1 − 0.3) = 7.00 even with the voucher.
    snap = make_snapshot([make_pool(YZ)], [make_job("j", bid=6.0)], vouchers=[program()])
    (left,) = clear(snap).unplaced
    (reason,) = left.reasons
    assert reason.code is ReasonCode.PRICE
    assert "bid 6.00 < cheapest feasible 7.00" in reason.message


@pytest.mark.parametrize("policy", ["exchange", "local", "cheapest", "nearest", "milp"])
def test_budget_is_never_exceeded(policy: str, make_pool, make_job, make_snapshot, clear) -> None:
    # Budget 300 yuan = 30,000 fen: one draw of ≥ 24,000 fen fits, a second does not, and
    # bid 8 < 10 cannot clear without it: exactly one job clears, at price 10 (16 GPUs for
    # two 8-GPU jobs, nothing turned away for room), drawing 24,000 fen.
    snap = make_snapshot(
        [make_pool(YZ, free_gpus=16)],
        [make_job("a", bid=8.0, buyer="acme"), make_job("b", bid=8.0, buyer="lab")],
        vouchers=[program(budget_cny=300.0)],
    )
    d = clear(snap, policy)
    assert len(d.jobs) == 1
    assert d.voucher_draws_fen == {"sh": 24_000}
    (left,) = d.unplaced
    (reason,) = left.reasons
    # The pool has room: the buyer is left out for lack of voucher money, and says so.
    assert reason.code is ReasonCode.PRICE, reason
    assert "voucher sh" in reason.message and "bid 8.00 < 10.00" in reason.message


def test_budget_already_spent_turns_the_program_off(
    make_pool, make_job, make_snapshot, clear
) -> None:
    snap = make_snapshot(
        [make_pool(YZ)],
        [make_job("j", bid=8.0)],
        vouchers=[program(budget_cny=300.0, spent_cny=300.0)],
    )
    d = clear(snap)
    assert d.jobs == () and d.voucher_draws_fen == {}
    assert "bid 8.00 < cheapest feasible 10.00" in d.unplaced[0].reasons[0].message


@pytest.mark.parametrize("policy", ["exchange", "cheapest", "milp"])
def test_per_buyer_cap_binds_one_buyer_not_the_others(
    policy: str, make_pool, make_job, make_snapshot, clear
) -> None:
    # Cap 300 yuan per buyer: one of acme's bid-8 jobs draws 24,000 fen, a second would
    # pass 30,000, and bid 8 < 10 cannot clear without it; lab has its own 300 yuan.
    jobs = [make_job(f"acme-{i}", bid=8.0, buyer="acme") for i in range(3)]
    jobs.append(make_job("lab-0", bid=8.0, buyer="lab"))
    snap = make_snapshot(
        [make_pool(YZ, free_gpus=32)], jobs, vouchers=[program(per_buyer_cap_cny=300.0)]
    )
    d = clear(snap, policy)
    assert sorted(p.buyer for p in d.jobs) == ["acme", "lab"]
    assert draws_by_buyer(d) == {("sh", "acme"): 24_000, ("sh", "lab"): 24_000}


def test_many_jobs_of_one_buyer_in_one_round(make_pool, make_job, make_snapshot, clear) -> None:
    # Six bid-12 jobs of one buyer (12 > 10: they clear with or without a voucher); cap 500
    # yuan. A voucher-backed job draws 30% of ≥ 10 × 8 × 10 = 800 yuan, ≥ 24,000 fen, so at
    # most 50,000 // 24,000 = 2 of them fit under the cap, whatever the engine reserves.
    jobs = [make_job(f"j{i}", bid=12.0) for i in range(6)]
    snap = make_snapshot(
        [make_pool(YZ, free_gpus=48)], jobs, vouchers=[program(per_buyer_cap_cny=500.0)]
    )
    d = clear(snap)
    assert len(d.jobs) == 6
    backed = [p for p in d.jobs if p.payment.voucher_id == "sh"]
    assert len(backed) <= 2
    assert sum(p.payment.voucher_fen for p in d.jobs) <= 50_000
    for p in d.jobs:
        assert p.payment.buyer_fen <= 12 * 80 * 100  # 960 yuan


def test_earlier_draws_of_the_buyer_count(make_pool, make_job, make_snapshot, clear) -> None:
    # acme already drew 100 of its 300 yuan: 20,000 fen left < a 24,000-fen draw.
    snap = make_snapshot(
        [make_pool(YZ, free_gpus=16)],
        [make_job("a", bid=8.0, buyer="acme"), make_job("b", bid=8.0, buyer="lab")],
        vouchers=[program(per_buyer_cap_cny=300.0, spent_by_buyer_cny={"acme": 100.0})],
    )
    d = clear(snap)
    assert [p.job_id for p in d.jobs] == ["b"]


# (case, program fields, pool kwargs, covered?)
ELIGIBILITY: list[tuple[str, dict[str, Any], dict[str, Any], bool]] = [
    ("any pool", {}, {}, True),
    ("the site", {"eligible_sites": frozenset({YZ})}, {}, True),
    ("another site", {"eligible_sites": frozenset({"qingyang"})}, {}, False),
    ("the hub", {"eligible_hubs": frozenset({"yangtze"})}, {}, True),
    ("another hub", {"eligible_hubs": frozenset({"gansu"})}, {}, False),
    ("the province", {"eligible_provinces": frozenset({"Shanghai"})}, {}, True),
    ("another province", {"eligible_provinces": frozenset({"Gansu"})}, {}, False),
    ("the buyer", {"eligible_buyers": frozenset({"acme"})}, {}, True),
    ("another buyer", {"eligible_buyers": frozenset({"lab"})}, {}, False),
    ("domestic only, NVIDIA pool", {"domestic_gpus_only": True}, {}, False),
    # Ascend 910B at speed 0.5 and reserve 5: 10 per ref GPU-hour, like the H100 pool.
    (
        "domestic only, Ascend pool",
        {"domestic_gpus_only": True},
        {"gpu": "Ascend 910B", "speed": 0.5, "reserve": 5.0},
        True,
    ),
    ("valid from hour 1 (now 0)", {"valid_from_h": 1.0}, {}, False),
    ("valid until hour 0 (now 0)", {"valid_until_h": 0.0}, {}, False),
    ("valid over now", {"valid_from_h": -1.0, "valid_until_h": 1.0}, {}, True),
]


@pytest.mark.parametrize(
    ("fields", "pool", "covered"), [pytest.param(*c[1:], id=c[0]) for c in ELIGIBILITY]
)
def test_eligibility(
    fields: dict[str, Any],
    pool: dict[str, Any],
    covered: bool,
    make_pool,
    make_job,
    make_snapshot,
    clear,
) -> None:
    # Bid 8 clears only with the voucher, so placement shows whether it applied.
    snap = make_snapshot(
        [make_pool(YZ, fabric=Fabric.ROCE, **pool)],
        [make_job("j", bid=8.0, buyer="acme")],
        vouchers=[program(**fields)],
    )
    d = clear(snap)
    assert bool(d.jobs) is covered
    if covered:
        assert d.jobs[0].payment.voucher_id == "sh"
        assert d.voucher_draws_fen["sh"] > 0
    else:
        assert d.voucher_draws_fen == {}


def test_a_gang_that_cannot_land_holds_no_voucher(
    make_pool, make_job, make_snapshot, clear
) -> None:
    # Cap 300 yuan per buyer. "big" (8 GPUs, bid 8) would draw ≥ 24,000 fen but its pool's
    # free GPUs sit on two half-free nodes (4 + 4): it cannot land, so it must hold nothing
    # of the cap (else 6,000 fen would be left), and "small" (4 GPUs × 40 ref GPU-hours, bid
    # 8, drawing ≥ 12,000 fen) gets the voucher. Price ∈ [10, 8 / 0.7 ≈ 11.43] (the pool
    # turned "big" away, so it may carry rent), × 4 GPUs × 10 h; voucher = floor(30% of it).
    snap = make_snapshot(
        [make_pool(YZ, free_gpus=8, free_nodes=(4, 4), total_gpus=16)],
        [make_job("big", bid=8.0), make_job("small", bid=8.0, gpus=4, work=40.0)],
        vouchers=[program(per_buyer_cap_cny=300.0)],
    )
    d = clear(snap)
    (job,) = d.jobs
    assert (job.job_id, job.payment.voucher_id) == ("small", "sh")
    assert 10.0 <= job.price_cny_per_gpu_hour <= 8 / 0.7 + 1e-9
    assert job.payment.voucher_fen == job.payment.seller_fen * 3 // 10
    assert job.payment.buyer_fen <= 8 * 40 * 100  # bid × W = 320 yuan
    (left,) = d.unplaced
    (reason,) = left.reasons
    assert reason.code is ReasonCode.CAPACITY
    assert "no node with 8 free GPUs" in reason.message
