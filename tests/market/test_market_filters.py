"""Hard filters and the reasons a buyer reads when work is left unplaced.

Each case is a tiny market where exactly one filter decides; the reason carries the code
and the numbers that decided it. Sites are national clusters at their catalogue
coordinates (RTT = great circle × 1.5 route / 200 km/ms × 2 + 2 ms access).
"""

from __future__ import annotations

from typing import Any

import pytest

from suanli.domain import Fabric
from suanli.market.decision import Decision, ReasonCode
from suanli.market.sizing import replica_spec

YZ = "yangtze-demo-zone"  # Shanghai, hub yangtze, ≈34 km from Shanghai's centre


def reasons_of(d: Decision, item_id: str) -> list[tuple[ReasonCode, str]]:
    (u,) = [u for u in d.unplaced if u.item_id == item_id]
    return [(r.code, r.message) for r in u.reasons]


# (case, pools as make_pool kwargs, job kwargs, code, words the message must contain)
JOB_CASES: list[tuple[str, list[dict[str, Any]], dict[str, Any], ReasonCode, list[str]]] = [
    (
        # Bid 8 < reserve 10 / speed 1 = 10 per ref GPU-hour.
        "bid below reserve",
        [{"site": YZ, "reserve": 10.0}],
        {"bid": 8.0},
        ReasonCode.PRICE,
        ["bid 8.00 < cheapest feasible 10.00", f"{YZ}/H100"],
    ),
    (
        # Reserve 4 on speed-0.5 cards is 4 / 0.5 = 8 per ref GPU-hour > bid 7.5.
        "bid below reserve per reference GPU-hour",
        [{"site": YZ, "gpu": "A800", "reserve": 4.0, "speed": 0.5}],
        {"bid": 7.5},
        ReasonCode.PRICE,
        ["bid 7.50 < cheapest feasible 8.00"],
    ),
    (
        # Run 80 / (8 · 1) = 10 h + data 3,600 GB · 8 bit / (10 Gbps · 3600 s) = 0.8 h
        # = 10.8 h > 10.5 h.
        "deadline with data transfer",
        [{"site": YZ, "free_gpus": 16}],
        {"bid": 15.0, "deadline_h": 10.5, "data_gb": 3600.0},
        ReasonCode.DEADLINE,
        ["10.8 h > deadline 10.5 h"],
    ),
    (
        # The H100 pool meets the deadline (10 h) but costs 20 > 15; the A800 pool at speed
        # 0.5 is cheap (1 / 0.5 = 2 per ref GPU-hour) but runs 80 / (8 · 0.5) = 20 h > 12 h.
        # The deadline reason cites the pool it rejected, not the one that was fast enough.
        "deadline at the slow pool, price at the fast one",
        [
            {"site": YZ, "reserve": 20.0},
            {"site": YZ, "gpu": "A800", "reserve": 1.0, "speed": 0.5},
        ],
        {"bid": 15.0, "deadline_h": 12.0},
        ReasonCode.DEADLINE,
        ["at best 20.0 h > deadline 12.0 h"],
    ),
    (
        # Run alone is 10 h > 9 h.
        "deadline without data",
        [{"site": YZ}],
        {"bid": 15.0, "deadline_h": 9.0},
        ReasonCode.DEADLINE,
        ["10.0 h > deadline 9.0 h"],
    ),
    (
        # H100 has 80 GB < 90 GB.
        "memory",
        [{"site": YZ}],
        {"bid": 15.0, "min_mem_gb": 90.0},
        ReasonCode.MEMORY,
        ["needs 90 GB per GPU"],
    ),
    (
        # 16 GPUs over 8-GPU nodes on Ethernet.
        "fabric",
        [{"site": YZ, "free_gpus": 32, "fabric": Fabric.ETHERNET}],
        {"bid": 15.0, "gpus": 16},
        ReasonCode.FABRIC,
        ["16 GPUs span nodes", "InfiniBand or RoCE"],
    ),
    (
        # The whole pool is 8 GPUs < 16.
        "gang larger than the pool",
        [{"site": YZ, "free_gpus": 8}],
        {"bid": 15.0, "gpus": 16},
        ReasonCode.GANG,
        ["needs 16 GPUs in one pool"],
    ),
    (
        "gpu not allowed",
        [{"site": YZ}],
        {"bid": 15.0, "allowed_gpus": frozenset({"H20"})},
        ReasonCode.MODEL_NOT_ALLOWED,
        ["only H20 allowed"],
    ),
    (
        # A 32-GPU pool with 8 free: big enough in size, not in room now.
        "not enough free GPUs",
        [{"site": YZ, "free_gpus": 8, "total_gpus": 32}],
        {"bid": 15.0, "gpus": 16},
        ReasonCode.CAPACITY,
        ["no pool with 16 free", "most free: 8"],
    ),
    (
        # 8 GPUs free, but 4 + 4 on two nodes: an 8-GPU gang needs one node.
        "free GPUs spread over nodes",
        [{"site": YZ, "free_gpus": 8, "free_nodes": (4, 4), "total_gpus": 16}],
        {"bid": 15.0},
        ReasonCode.CAPACITY,
        ["spread over nodes", "no node with 8 free GPUs"],
    ),
    (
        # 16 GPUs free as 8 + 4 + 4 on IB: a 16-GPU gang needs two whole free nodes.
        "multi-node gang without whole nodes",
        [{"site": YZ, "free_gpus": 16, "free_nodes": (8, 4, 4), "total_gpus": 24}],
        {"bid": 15.0, "gpus": 16},
        ReasonCode.CAPACITY,
        ["fewer than 2 whole free nodes"],
    ),
]


@pytest.mark.parametrize(
    ("pools", "job", "code", "words"),
    [pytest.param(*c[1:], id=c[0]) for c in JOB_CASES],
)
@pytest.mark.parametrize("policy", ["exchange", "cheapest", "nearest", "milp"])
def test_job_reason(
    policy: str,
    pools: list[dict[str, Any]],
    job: dict[str, Any],
    code: ReasonCode,
    words: list[str],
    make_pool,
    make_job,
    make_snapshot,
    clear,
) -> None:
    snap = make_snapshot([make_pool(**p) for p in pools], [make_job("j", **job)])
    d = clear(snap, policy)
    assert d.jobs == ()
    reasons = reasons_of(d, "j")
    assert code in [c for c, _ in reasons], reasons
    message = next(m for c, m in reasons if c is code)
    for word in words:
        assert word in message, message


@pytest.mark.parametrize(
    ("deadline_h", "placed"),
    [
        (10.5, False),  # 10 h run + 0.8 h data transfer = 10.8 h > 10.5 h
        (10.8, True),  # exactly on time
        (11.0, True),
        (None, True),
    ],
)
def test_deadline_counts_the_data_transfer(
    deadline_h: float | None, placed: bool, make_pool, make_job, make_snapshot, clear
) -> None:
    snap = make_snapshot(
        [make_pool(YZ)], [make_job("j", bid=15.0, deadline_h=deadline_h, data_gb=3600.0)]
    )
    assert bool(clear(snap).jobs) is placed


def test_memory_sends_the_job_to_bigger_cards(make_pool, make_job, make_snapshot, clear) -> None:
    # 90 GB per GPU: not H100 (80 GB), yes H20 (96 GB). H20 at speed 0.15 and reserve 1
    # costs 1 / 0.15 ≈ 6.67 per ref GPU-hour < bid 15.
    snap = make_snapshot(
        [make_pool(YZ, "H100"), make_pool(YZ, "H20", reserve=1.0, speed=0.15)],
        [make_job("big-mem", bid=15.0, min_mem_gb=90.0)],
    )
    (job,) = clear(snap).jobs
    assert job.pool_id == f"{YZ}/H20"
    assert job.duration_h == pytest.approx(80 / (8 * 0.15))  # ≈ 66.7 h


def test_fabric_sends_the_gang_to_infiniband(make_pool, make_job, make_snapshot, clear) -> None:
    # The Ethernet pool is cheaper, but a 16-GPU gang spans two nodes: only the IB pool.
    snap = make_snapshot(
        [
            make_pool(YZ, free_gpus=32, fabric=Fabric.ETHERNET, reserve=5.0),
            make_pool("wuhu", free_gpus=16, fabric=Fabric.INFINIBAND, reserve=10.0),
        ],
        [make_job("gang", bid=15.0, gpus=16)],
    )
    (job,) = clear(snap).jobs
    assert (job.pool_id, job.nodes) == ("wuhu/H100", (8, 8))


def test_fabric_roce_counts_as_high_bandwidth(make_pool, make_job, make_snapshot, clear) -> None:
    snap = make_snapshot(
        [make_pool(YZ, free_gpus=16, fabric=Fabric.ROCE)], [make_job("gang", bid=15.0, gpus=16)]
    )
    assert [j.pool_id for j in clear(snap).jobs] == [f"{YZ}/H100"]


def test_locality_for_the_status_quo(make_pool, make_job, make_snapshot, clear) -> None:
    # A Beijing buyer sees only Beijing/Tianjin/Hebei sites under "local"; the exchange
    # sends it to Shanghai.
    snap = make_snapshot([make_pool(YZ)], [make_job("j", bid=15.0, origin_city="Beijing")])
    reasons = reasons_of(clear(snap, "local"), "j")
    assert reasons == [(ReasonCode.LOCALITY, "outside Beijing and its hub (1 pool)")]
    assert [j.pool_id for j in clear(snap).jobs] == [f"{YZ}/H100"]


def test_no_pools(make_job, make_snapshot, clear) -> None:
    d = clear(make_snapshot([], [make_job("j", bid=15.0)]))
    assert [c for c, _ in reasons_of(d, "j")] == [ReasonCode.NO_POOLS]


def test_latency_from_far_city(ctx, make_pool, make_service, make_snapshot, clear) -> None:
    # Shanghai demand, TTFT 40 ms; the only pool is in Zhongwei, 1,646 km away:
    # RTT = 1,646 · 1.5 / 200 · 2 + 2 ≈ 26.7 ms, plus prefill of 300 tokens on H100.
    spec = replica_spec(ctx.models["Llama-3.1-8B"], ctx.accelerators["H100"], 300, 60, 40, 25)
    assert 13.3 < spec.ttft_ms <= 37.5, "perf model changed: pick another TTFT"
    snap = make_snapshot(
        [make_pool("zhongwei")],
        services=[make_service("chat", demand_rps={"Shanghai": 10.0}, ttft_ms=40.0)],
    )
    d = clear(snap)
    (svc,) = d.services
    assert (svc.replicas, svc.routes, svc.served_rps) == ((), (), 0)
    assert svc.payment.buyer_fen == 0
    ((code, message),) = reasons_of(d, "chat")
    assert code is ReasonCode.LATENCY
    assert "Shanghai→zhongwei 27 ms" in message
    assert "TTFT 40 ms" in message
    assert f"prefill {spec.ttft_ms:.0f} ms" in message
    assert [r.code for r in svc.unserved["Shanghai"]] == [ReasonCode.LATENCY]


def test_latency_passes_with_looser_ttft(make_pool, make_service, make_snapshot, clear) -> None:
    # TTFT 2 s: 27 ms of network is nothing.
    snap = make_snapshot(
        [make_pool("zhongwei")],
        services=[make_service("chat", demand_rps={"Shanghai": 10.0}, ttft_ms=2000.0)],
    )
    (svc,) = clear(snap).services
    assert svc.served_rps == pytest.approx(10.0)
    (route,) = svc.routes
    assert route.rtt_ms == pytest.approx(26.7, abs=0.1)


@pytest.mark.parametrize(
    ("service", "code", "words"),
    [
        # No batch size makes a token in 1 ms.
        ({"tpot_ms": 1.0}, ReasonCode.TPOT, ["cannot meet TPOT 1 ms"]),
        ({"allowed_gpus": frozenset({"H20"})}, ReasonCode.MODEL_NOT_ALLOWED, ["not allowed"]),
        # 0.1 yuan/M tokens × 60 × 3600 / 10⁶ ≈ 0.02 yuan per req/s-hour; an H100 at 10
        # yuan/h serving ≈ 67 req/s costs ≈ 0.15 per req/s-hour.
        ({"bid": 0.1}, ReasonCode.PRICE, ["0.02 yuan per req/s-hour < cheapest feasible 0.15"]),
    ],
)
def test_service_reason(
    service: dict[str, Any],
    code: ReasonCode,
    words: list[str],
    make_pool,
    make_service,
    make_snapshot,
    clear,
) -> None:
    args: dict[str, Any] = {"demand_rps": {"Shanghai": 10.0}, "ttft_ms": 2000.0, **service}
    snap = make_snapshot([make_pool(YZ)], services=[make_service("s", **args)])
    d = clear(snap)
    reasons = reasons_of(d, "s")
    assert [c for c, _ in reasons] == [code]
    for word in words:
        assert word in reasons[0][1], reasons


def test_service_demand_worth_less_than_a_replica(
    make_pool, make_service, make_snapshot, clear
) -> None:
    # 0.01 req/s × 4.32 yuan per req/s-hour ≈ 0.04 yuan/h < one H100 at 10 yuan/h, even
    # though a fully used replica would be worth ≈ 67 × 4.32 ≈ 289 yuan/h.
    snap = make_snapshot(
        [make_pool(YZ)],
        services=[make_service("tiny", demand_rps={"Shanghai": 0.01}, ttft_ms=2000.0)],
    )
    d = clear(snap)
    ((code, message),) = reasons_of(d, "tiny")
    assert code is ReasonCode.PRICE
    assert "less than a replica costs" in message and "10.00 yuan/h" in message


def test_latency_reason_names_the_pool_it_rejected(
    make_pool, make_service, make_snapshot, clear
) -> None:
    # The Yangtze demo zone meets TTFT 40 ms (≈2.5 ms + ≈20 ms) but asks 1,000 yuan/h, more
    # than a replica's ≈289 yuan/h of value; Zhongwei is cheap but ≈27 + ≈20 ms > 40 ms.
    # The latency reason is about Zhongwei, and the price reason about the rest.
    snap = make_snapshot(
        [make_pool(YZ, reserve=1000.0), make_pool("zhongwei", reserve=1.0)],
        services=[make_service("chat", demand_rps={"Shanghai": 10.0}, ttft_ms=40.0)],
    )
    reasons = dict(reasons_of(clear(snap), "chat"))
    assert set(reasons) == {ReasonCode.LATENCY, ReasonCode.PRICE}
    assert "Shanghai→zhongwei 27 ms" in reasons[ReasonCode.LATENCY]
    assert f"({YZ}/H100)" in reasons[ReasonCode.PRICE]
