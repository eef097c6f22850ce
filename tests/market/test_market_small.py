"""Hand-computed small markets: who is placed where, at what price, who pays what.

Units: prices in yuan per GPU-hour, bids in yuan per reference (H100) GPU-hour, money in
fen (1 yuan = 100 fen). A job of work W on n GPUs of speed f runs W / (n f) hours; the
seller gets price × n × hours; the fee is fee_rate of that, on top, paid by the buyer.
"""

from __future__ import annotations

import pytest

from suanli.domain import Fabric
from suanli.market.decision import Decision, ReasonCode
from suanli.market.sizing import replica_spec

YZ = "yangtze-demo-zone"  # Shanghai, hub yangtze
PLACING = ("exchange", "local", "cheapest", "nearest", "milp")


def placed(d: Decision) -> dict[str, str]:
    return {p.job_id: p.pool_id for p in d.jobs}


def price_of(d: Decision, pool_id: str) -> float:
    return next(p.price_cny_per_gpu_hour for p in d.prices if p.pool_id == pool_id)


def test_scarce_pool_goes_to_the_higher_bid(make_pool, make_job, make_snapshot, clear) -> None:
    # One pool: 8 free H100, reserve 10, speed 1, fee 0. Two 8-GPU jobs of 80 ref GPU-hours
    # bid 15 and 12: only one fits, and 15 − 10 = 5 > 12 − 10 = 2 per GPU-hour.
    snap = make_snapshot(
        [make_pool(YZ, free_gpus=8, reserve=10.0)],
        [make_job("hi", bid=15.0), make_job("lo", bid=12.0)],
    )
    d = clear(snap)
    assert placed(d) == {"hi": f"{YZ}/H100"}
    (job,) = d.jobs
    # The pool turned the 12 away: price = reserve + rent, rent ≤ winner's value − reserve
    # = 15 · 1 − 10 = 5, so price ∈ [10, 15].
    price = job.price_cny_per_gpu_hour
    assert 10.0 <= price <= 15.0
    assert price == price_of(d, f"{YZ}/H100")
    assert job.duration_h == pytest.approx(10.0)  # 80 / (8 · 1.0)
    assert job.nodes == (8,)
    assert job.payment.seller_fen == round(price * 8 * 10.0 * 100)  # price × 8 GPUs × 10 h
    assert job.payment.fee_fen == 0
    assert job.payment.buyer_fen <= 15 * 80 * 100  # bid × W = 1,200 yuan
    (row,) = d.prices
    assert (row.gpus_sold, row.free_gpus_after) == (8, 0)
    assert row.scarcity_rent_cny_per_gpu_hour == pytest.approx(price - 10.0)
    (left,) = d.unplaced
    assert left.item_id == "lo" and left.kind == "job"
    assert [r.code for r in left.reasons] == [ReasonCode.CAPACITY]


def test_lp_bound_prices_the_scarce_pool_between_the_bids(
    make_pool, make_job, make_snapshot, clear
) -> None:
    # Same market. LP: one unit of room, values 5 and 2 per GPU-hour over reserve; any
    # optimal capacity dual lies in [2, 5], so price = 10 + dual ∈ [12, 15], and the LP
    # welfare is the winner's 8 GPUs × 5 = 40 yuan/h.
    snap = make_snapshot(
        [make_pool(YZ, free_gpus=8, reserve=10.0)],
        [make_job("hi", bid=15.0), make_job("lo", bid=12.0)],
    )
    d = clear(snap, "lp-bound")
    assert d.jobs == ()
    assert 12.0 - 1e-6 <= price_of(d, f"{YZ}/H100") <= 15.0 + 1e-6
    assert d.welfare_cny_per_hour == pytest.approx(40.0)
    assert clear(snap).welfare_cny_per_hour == pytest.approx(40.0)  # the exchange reaches it


@pytest.mark.parametrize("policy", PLACING)
@pytest.mark.parametrize(
    ("fee_rate", "seller_fen", "fee_fen"),
    [
        (0.0, 80_000, 0),  # 10 yuan × 8 GPUs × 10 h = 800 yuan
        (0.02, 80_000, 1_600),  # fee = round(80,000 × 0.02)
        (0.05, 80_000, 4_000),  # fee = round(80,000 × 0.05); 15/1.05 = 14.3 > 10 still
    ],
)
def test_room_for_everyone_prices_at_reserve(
    policy: str,
    fee_rate: float,
    seller_fen: int,
    fee_fen: int,
    make_pool,
    make_job,
    make_snapshot,
    clear,
) -> None:
    # 16 free GPUs, two 8-GPU jobs: capacity is not scarce, so price = reserve exactly.
    snap = make_snapshot(
        [make_pool(YZ, free_gpus=16, reserve=10.0)],
        [make_job("a", bid=15.0), make_job("b", bid=12.0)],
        fee_rate=fee_rate,
    )
    d = clear(snap, policy)
    assert placed(d) == {"a": f"{YZ}/H100", "b": f"{YZ}/H100"}
    assert price_of(d, f"{YZ}/H100") == 10.0
    for job in d.jobs:
        assert job.price_cny_per_gpu_hour == 10.0
        assert job.payment.seller_fen == seller_fen
        assert job.payment.fee_fen == fee_fen
        assert job.payment.buyer_fen == seller_fen + fee_fen
        assert job.payment.voucher_fen == 0
    assert d.unplaced == ()
    assert sorted(n for j in d.jobs for n in j.nodes) == [8, 8]


@pytest.mark.parametrize("policy", PLACING)
def test_slow_cards_run_longer_and_bill_per_gpu_hour(
    policy: str, make_pool, make_job, make_snapshot, clear
) -> None:
    # Speed 0.5: a card does half a reference GPU-hour per hour, so reserve 4 per GPU-hour
    # costs 4 / 0.5 = 8 per reference GPU-hour; a bid of 9 clears it.
    snap = make_snapshot(
        [make_pool(YZ, "A800", free_gpus=8, reserve=4.0, speed=0.5)],
        [make_job("slow", bid=9.0)],
    )
    d = clear(snap, policy)
    (job,) = d.jobs
    assert job.duration_h == pytest.approx(20.0)  # 80 / (8 · 0.5)
    assert job.payment.seller_fen == 64_000  # 4 yuan × 8 GPUs × 20 h = 640 yuan
    assert job.payment.buyer_fen <= 72_000  # bid 9 × 80 = 720 yuan
    assert job.surplus_cny_per_hour == pytest.approx(8 * (0.5 * 9.0 - 4.0))  # n (f b − r) = 4


@pytest.mark.parametrize(
    ("policy", "origin", "expected"),
    [
        # Yangtze demo zone (Shanghai): reserve 12; Zhongwei (Ningxia): reserve 8.
        ("cheapest", "Shanghai", "zhongwei/H100"),  # 8 < 12 per ref GPU-hour
        ("nearest", "Shanghai", f"{YZ}/H100"),  # ≈34 km vs ≈1,650 km
        ("nearest", "Yinchuan", "zhongwei/H100"),  # Yinchuan is next door to Zhongwei
        ("local", "Shanghai", f"{YZ}/H100"),  # only Shanghai's province / Yangtze hub
        ("local", "Yinchuan", "zhongwei/H100"),  # only Ningxia
        ("exchange", "Shanghai", "zhongwei/H100"),  # surplus 15 − 8 = 7 > 15 − 12 = 3
    ],
)
def test_each_policy_picks_its_pool(
    policy: str, origin: str, expected: str, make_pool, make_job, make_snapshot, clear
) -> None:
    snap = make_snapshot(
        [make_pool(YZ, reserve=12.0), make_pool("zhongwei", reserve=8.0)],
        [make_job("j", bid=15.0, origin_city=origin)],
    )
    assert placed(clear(snap, policy)) == {"j": expected}


def test_multi_node_gang_takes_whole_nodes(make_pool, make_job, make_snapshot, clear) -> None:
    # 16 GPUs on an InfiniBand pool of 8-GPU nodes: two whole nodes, 80 / 16 = 5 h.
    snap = make_snapshot([make_pool(YZ, free_gpus=24)], [make_job("big", bid=15.0, gpus=16)])
    d = clear(snap)
    (job,) = d.jobs
    assert job.nodes == (8, 8)
    assert job.duration_h == pytest.approx(5.0)
    assert job.payment.seller_fen == 80_000  # 10 × 16 × 5 = 800 yuan
    assert d.prices[0].free_gpus_after == 8


def test_small_gang_best_fits_a_fragmented_node(make_pool, make_job, make_snapshot, clear) -> None:
    # Free GPUs per node (8, 3): a 2-GPU job goes on the node with 3 free (best fit), so
    # the whole node stays free for the 8-GPU job after it.
    snap = make_snapshot(
        [make_pool(YZ, free_gpus=11, free_nodes=(8, 3), total_gpus=16)],
        [make_job("two", bid=20.0, gpus=2, work=20.0), make_job("eight", bid=15.0)],
    )
    d = clear(snap)
    assert placed(d) == {"two": f"{YZ}/H100", "eight": f"{YZ}/H100"}
    nodes = {j.job_id: j.nodes for j in d.jobs}
    assert nodes == {"two": (2,), "eight": (8,)}
    assert d.prices[0].free_gpus_after == 1  # 11 − 2 − 8


def test_service_replicas_routes_and_payment(
    ctx, make_pool, make_service, make_snapshot, clear
) -> None:
    # Llama-3.1-8B, 300 prompt / 60 output tokens, TTFT 40 ms, TPOT 25 ms, 100 req/s from
    # Shanghai, on H100 at the Yangtze demo zone (reserve 10, fee 2%).
    spec = replica_spec(ctx.models["Llama-3.1-8B"], ctx.accelerators["H100"], 300, 60, 40, 25)
    assert spec.gpus == 1 and 50 < spec.rps < 100, "the perf model changed: redo the sums"
    snap = make_snapshot(
        [make_pool(YZ, free_gpus=8)],
        services=[make_service("chat", demand_rps={"Shanghai": 100.0}, ttft_ms=40.0)],
        fee_rate=0.02,
    )
    d = clear(snap)
    (svc,) = d.services
    (rep,) = svc.replicas
    # 100 req/s over one replica's 50–100 req/s: 2 replicas. The second carries the
    # 100 − cap ≈ 33 req/s left, worth 33 × 4.32 ≈ 143 yuan/h > its GPU's 10 yuan/h.
    assert (rep.replicas, rep.gpus_per_replica) == (2, 1)
    assert rep.capacity_rps_per_replica == pytest.approx(spec.rps)
    (route,) = svc.routes
    assert (route.city, route.pool_id) == ("Shanghai", f"{YZ}/H100")
    assert route.rps == pytest.approx(100.0)
    assert route.rtt_ms == pytest.approx(2.5, abs=0.1)  # 34 km · 1.5 / 200 · 2 + 2 ms access
    assert route.ttft_ms == pytest.approx(spec.ttft_ms)
    assert svc.served_rps == pytest.approx(100.0)
    # 2 GPUs × 10 yuan × 0.25 h horizon = 5 yuan; fee round(500 × 0.02) = 10 fen.
    assert (svc.payment.seller_fen, svc.payment.fee_fen, svc.payment.buyer_fen) == (500, 10, 510)
    # Value: 20 yuan/M tokens × 60 tokens × 3600 s / 10⁶ = 4.32 yuan per req/s-hour;
    # 100 req/s × 4.32 × 0.25 h = 108 yuan = 10,800 fen ≥ 510.
    assert svc.payment.buyer_fen <= 10_800
    assert d.prices[0].gpus_sold == 2


def test_service_picks_the_near_pool_when_far_breaks_ttft(
    make_pool, make_service, make_snapshot, clear
) -> None:
    # Zhongwei is cheaper (reserve 5 vs 10) but Shanghai→Zhongwei ≈ 27 ms + prefill ≈ 20 ms
    # > 40 ms TTFT; the Yangtze demo zone is ≈ 2.5 ms away.
    snap = make_snapshot(
        [make_pool("zhongwei", reserve=5.0), make_pool(YZ, reserve=10.0)],
        services=[make_service("chat", demand_rps={"Shanghai": 10.0}, ttft_ms=40.0)],
    )
    for policy in ("exchange", "local", "nearest"):
        (svc,) = clear(snap, policy).services
        assert [r.pool_id for r in svc.routes] == [f"{YZ}/H100"], policy
    # The latency-blind broker takes the cheap far pool and breaks the SLO.
    (svc,) = clear(snap, "cheapest").services
    (route,) = svc.routes
    assert route.pool_id == "zhongwei/H100"
    assert route.rtt_ms + route.ttft_ms > 40.0


def test_empty_market_places_nothing(make_pool, make_snapshot, clear) -> None:
    d = clear(make_snapshot([make_pool(YZ, free_gpus=8)]))
    assert (d.jobs, d.services, d.unplaced) == ((), (), ())
    assert d.welfare_cny_per_hour == 0.0
    assert d.prices[0].price_cny_per_gpu_hour == 10.0
    assert d.gpus_placed == 0


def test_fabric_of_a_single_node_gang_does_not_matter(
    make_pool, make_job, make_snapshot, clear
) -> None:
    # 8 GPUs fit one 8-GPU node: plain Ethernet is fine.
    snap = make_snapshot(
        [make_pool(YZ, free_gpus=8, fabric=Fabric.ETHERNET)], [make_job("one-node", bid=15.0)]
    )
    assert placed(clear(snap)) == {"one-node": f"{YZ}/H100"}
