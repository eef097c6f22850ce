"""Replica plans for services, and voucher rationing: small cases worked by hand.

Service units: demand in requests/s, value v in yuan per request/s-hour (fee 0 here), a
replica's cost = GPUs × price per GPU-hour. Voucher units: gains in yuan per hour,
reservations R in yuan, λ in yuan per hour per yuan reserved.
"""

from __future__ import annotations

import numpy as np
import pytest

from suanli.market.service_candidates import ServiceCandidates, ServiceItem
from suanli.market.service_plan import plan_services
from suanli.market.voucher_rationing import VoucherFacts, job_values, ration


def two_city_service(*, gpus: int = 1, cap_rps: float = 4.0) -> ServiceCandidates:
    """One service worth 6 per request/s-hour; cities A and B (3 req/s each) both reach
    pools 0 and 1, where a replica of ``gpus`` GPUs serves ``cap_rps``."""
    items = [ServiceItem(0, city, 3.0, 6.0, (), None, None, float("inf")) for city in ("A", "B")]
    item = np.array([0, 0, 1, 1], dtype=np.int64)
    pool = np.array([0, 1, 0, 1], dtype=np.int64)
    return ServiceCandidates(
        items=items,
        item=item,
        pool=pool,
        u=np.zeros(4),
        size=np.full(4, 3.0 * gpus / cap_rps),
        rank=np.zeros(4),
        gpus_per_replica=np.full(4, gpus, dtype=np.int64),
        cap_rps=np.full(4, cap_rps),
        rtt_ms=np.zeros(4),
        ttft_ms=np.zeros(4),
        specs={},
    )


PRICE = np.array([10.0, 10.5])  # per GPU-hour on pools 0 and 1
# The auction put A on pool 0 (pair 0) and B on pool 1 (pair 3).
SPLIT = np.array([0, 3], dtype=np.int64)


@pytest.mark.parametrize(
    ("tol", "room", "expected"),
    [
        # Plan B (greedy): pool 0 is cheaper per req/s (10/4 = 2.5 < 10.5/4); both cities
        # there, 6 req/s → 2 replicas: 6·6 − 2·10 = 16 (1 replica: 24 − 10 = 14).
        # Plan A (the auction's split): 1 replica each: 36 − 10 − 10.5 = 15.5 < 16.
        (0.0, [8.0, 8.0], [(0, 2, [(0, 3.0), (2, 3.0)])]),
        # Tolerance 0.3 per GPU: A wins if 15.5 ≥ 16 − 0.3·2 = 15.4, and it does.
        (0.3, [8.0, 8.0], [(0, 1, [(0, 3.0)]), (1, 1, [(3, 3.0)])]),
        # One GPU left on pool 0. Greedy: pool 0 alone holds 1 replica, 24 − 10 = 14; pool
        # 1 alone, 2 replicas, 36 − 21 = 15: it opens pool 1; adding pool 0 would pull both
        # cities onto its one replica (14 < 15), so B = 15 and A (15.5) wins.
        (0.0, [1.0, 8.0], [(0, 1, [(0, 3.0)]), (1, 1, [(3, 3.0)])]),
    ],
)
def test_plan_by_hand(
    tol: float, room: list[float], expected: list[tuple[int, int, list[tuple[int, float]]]]
) -> None:
    room_gpus = np.array(room)
    blocks = plan_services(two_city_service(), PRICE, room_gpus, SPLIT, fee_rate=0.0, tol=tol)
    got = [(b.pool, b.replicas, [(s, pytest.approx(x)) for s, x in b.routes]) for b in blocks]
    assert got == expected
    used = (
        sum(b.replicas for b in blocks if b.pool == 0),
        sum(b.replicas for b in blocks if b.pool == 1),
    )
    assert room_gpus.tolist() == [room[0] - used[0], room[1] - used[1]]


def test_a_replica_not_worth_its_gpus_is_left_out() -> None:
    # 8-GPU replicas serving 4 req/s: 4 req/s · 6 = 24 < 8 GPUs · 10 = 80 per hour.
    blocks = plan_services(
        two_city_service(gpus=8), PRICE, np.array([64.0, 64.0]), SPLIT, fee_rate=0.0, tol=0.0
    )
    assert blocks == []


def facts(gain: list[float], budget: float, buyer_cap: float = float("inf")) -> VoucherFacts:
    """Pairs of one buyer under program 0, worth 10 + gain with the voucher, 10 without."""
    n = len(gain)
    return VoucherFacts(
        program=np.zeros(n, dtype=np.int64),
        buyer=np.zeros(n, dtype=np.int64),
        buyers=["acme"],
        with_voucher=10.0 + np.array(gain),
        without=np.full(n, 10.0),
        bid_cap_cny=np.full(n, 1e9),
        per_price_cny=np.zeros(n),
        budget_left_cny=np.array([budget]),
        buyer_left_cny={(0, 0): buyer_cap},
    )


@pytest.mark.parametrize(
    ("budget", "buyer_cap", "lam"),
    [
        # Gains 10, 9, 4 per hour for R = 40, 50, 20 yuan: 0.25, 0.18 and 0.2 per yuan.
        # Budget 100: 0.25 (40, 60 left), 0.2 (20, 40 left), then 0.18 needs 50 > 40:
        # λ = 0.18 for every pair of the program.
        (100.0, float("inf"), [0.18, 0.18, 0.18]),
        # Budget 110 holds all three (40 + 20 + 50): λ = 0.
        (110.0, float("inf"), [0.0, 0.0, 0.0]),
        # Cap 45 for the buyer: 0.25 takes 40; 0.2 needs 20 > 5 → λ = 0.2 for the buyer;
        # the 50-yuan pair can never fit 45 and is priced out (λ = inf).
        (1000.0, 45.0, [0.2, np.inf, 0.2]),
    ],
)
def test_ration_by_hand(budget: float, buyer_cap: float, lam: list[float]) -> None:
    f = facts([10.0, 9.0, 4.0], budget, buyer_cap)
    reserve = np.array([40.0, 50.0, 20.0])
    got = ration(f, np.arange(3, dtype=np.int64), reserve, f.with_voucher)
    assert got.tolist() == pytest.approx(lam)


def test_job_values_price_the_voucher() -> None:
    # λ = 0.18: with 20 − 0.18·40 = 12.8 > 10; 19 − 0.18·50 = 10 (a tie: 10); 14 − 3.6 =
    # 10.4. λ = inf: the plain value 10.
    f = facts([10.0, 9.0, 4.0], 100.0)
    reserve = np.array([40.0, 50.0, 20.0])
    values = job_values(f, np.array([0.18, 0.18, np.inf]), reserve)
    assert values.tolist() == pytest.approx([12.8, 10.0, 10.0])
