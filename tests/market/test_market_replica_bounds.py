"""Token valuation and replica bounds in the clearing, by hand and on random markets.

Numbers by hand (performance model, H100, TPOT 50 ms, TTFT 10 s): a Llama-3.1-8B replica
(1 GPU) serves 1.235 req/s of 12,000 prompt + 343 output tokens; a Llama-3.1-70B replica
(4 GPUs) serves 19.69 req/s of 300 + 343, 4.92 per GPU. At 2 yuan/M input and 8 yuan/M
output (DeepSeek-shaped) a long request is worth (12,000·2 + 343·8)/10⁶ = 0.026744 yuan,
96.3 yuan per req/s-hour, 118.9 per GPU-hour; a short one 0.003344 yuan, 12.04 per
req/s-hour, 59.3 per GPU-hour. Valued by output tokens only, as before, the long one was
worth 343·8·3600/10⁶ = 9.88 per req/s-hour, 12.2 per GPU-hour, and lost to the short one
(48.6 per GPU-hour).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suanli.errors import InvalidInput
from suanli.latency.model import rtt
from suanli.market.context import MarketContext
from suanli.market.decision import Decision, ServiceOutcome
from suanli.market.sizing import replica_spec
from suanli.market.snapshot import InferenceService, MarketSnapshot, PoolState
from suanli.market.valuation import request_value_cny, value_cny_per_rps_hour

LONG = {"model": "Llama-3.1-8B", "prompt_tokens": 12_000.0, "output_tokens": 343.0}
SHORT = {"model": "Llama-3.1-70B", "prompt_tokens": 300.0, "output_tokens": 343.0}
SLO = {"ttft_ms": 10_000.0, "tpot_ms": 50.0}


def outcome(d: Decision, service_id: str) -> ServiceOutcome:
    return next(s for s in d.services if s.service_id == service_id)


def replicas(out: ServiceOutcome) -> int:
    return sum(r.replicas for r in out.replicas)


def test_a_request_is_worth_its_prompt_too(make_service: Callable[..., InferenceService]) -> None:
    bids = {"bid_cny_per_m_input_tokens": 2.0, "bid": 8.0}
    long = make_service("long", demand_rps={"Shanghai": 1.0}, **LONG, **SLO, **bids)
    assert request_value_cny(long) == pytest.approx(0.026744)
    assert value_cny_per_rps_hour(long) == pytest.approx(96.2784)
    # Cache hits at 0.5 yuan/M: 56.3% of the prompt (DeepSeek's reported hit share).
    cached = make_service(
        "cached",
        demand_rps={"Shanghai": 1.0},
        **LONG,
        **SLO,
        **bids,
        bid_cny_per_m_cached_input_tokens=0.5,
        cached_fraction=0.563,
    )
    assert request_value_cny(cached) == pytest.approx(
        (12_000 * 0.437 * 2.0 + 12_000 * 0.563 * 0.5 + 343 * 8.0) / 1e6
    )


@pytest.mark.parametrize(("bid_in", "winner"), [(2.0, "long"), (0.0, "chat")])
def test_a_long_prompt_service_outbids_a_short_prompt_one_with_the_same_output_bid(
    bid_in: float,
    winner: str,
    make_pool: Callable[..., PoolState],
    make_service: Callable[..., InferenceService],
    make_snapshot: Callable[..., MarketSnapshot],
    clear: Callable[..., Decision],
) -> None:
    # Four H100 on one node: four 8B replicas for the long documents (4.9 req/s) or one
    # 70B replica for the chat (19.6 req/s); not both. The chat is listed first.
    pool = make_pool("yangtze-demo-zone", "H100", free_gpus=4, gpus_per_node=4, reserve=10.0)
    bids = {"bid": 8.0, "bid_cny_per_m_input_tokens": bid_in}
    chat = make_service("chat", demand_rps={"Shanghai": 19.6}, **SHORT, **SLO, **bids)
    long = make_service("long", demand_rps={"Shanghai": 4.9}, **LONG, **SLO, **bids)
    d = clear(make_snapshot([pool], services=[chat, long]))
    loser = "chat" if winner == "long" else "long"
    assert replicas(outcome(d, winner)) > 0
    assert replicas(outcome(d, loser)) == 0
    assert outcome(d, loser).unserved  # and it is told why


def test_max_replicas_caps_a_service_that_demand_would_pay_more_for(
    make_pool: Callable[..., PoolState],
    make_service: Callable[..., InferenceService],
    make_snapshot: Callable[..., MarketSnapshot],
    clear: Callable[..., Decision],
) -> None:
    pools = [
        make_pool("yangtze-demo-zone", "H100", free_gpus=16, reserve=10.0),
        make_pool("zhongwei", "H100", free_gpus=16, reserve=6.0),
    ]
    bids: dict[str, Any] = {"bid": 8.0, "bid_cny_per_m_input_tokens": 2.0}
    svc = make_service("long", demand_rps={"Shanghai": 12.0}, **LONG, **SLO, **bids, max_replicas=3)
    for policy in ("exchange", "local", "cheapest", "nearest", "milp"):
        out = outcome(clear(make_snapshot(pools, services=[svc]), policy), "long")
        assert replicas(out) == 3, policy  # demand would pay for 10
        assert out.served_rps <= 3 * 1.2355 + 1e-6
        why = [r.message for r in out.unserved["Shanghai"]]
        assert any("the service holds its max_replicas (3)" in m for m in why), (policy, why)


def test_min_replicas_go_to_the_cheapest_pool_and_are_paid_at_its_price(
    make_pool: Callable[..., PoolState],
    make_service: Callable[..., InferenceService],
    make_snapshot: Callable[..., MarketSnapshot],
    clear: Callable[..., Decision],
) -> None:
    # 0.01 req/s worth 0.96 yuan/h cannot pay a 10-yuan GPU-hour; the owner wants 2
    # replicas anyway. Zhongwei is cheaper (6) and meets the 10 s TTFT from Shanghai.
    pools = [
        make_pool("yangtze-demo-zone", "H100", free_gpus=8, reserve=10.0),
        make_pool("zhongwei", "H100", free_gpus=8, reserve=6.0),
    ]
    bids: dict[str, Any] = {"bid": 8.0, "bid_cny_per_m_input_tokens": 2.0}
    svc = make_service("doc", demand_rps={"Shanghai": 0.01}, **LONG, **SLO, **bids)
    plain = outcome(clear(make_snapshot(pools, services=[svc])), "doc")
    assert replicas(plain) == 0
    warm = replace(svc, min_replicas=2)
    d = clear(make_snapshot(pools, services=[warm], fee_rate=0.02))
    out = outcome(d, "doc")
    (placed,) = out.replicas
    assert (placed.pool_id, placed.replicas, placed.required) == ("zhongwei/H100", 2, 2)
    assert out.served_rps == pytest.approx(0.01)  # the demand there is routed to them
    price = next(p.price_cny_per_gpu_hour for p in d.prices if p.pool_id == "zhongwei/H100")
    assert price == pytest.approx(6.0)
    assert out.payment.seller_fen == round(6.0 * 2 * 0.25 * 100)  # 2 GPUs × 0.25 h × 6
    assert out.payment.buyer_fen == out.payment.seller_fen + round(out.payment.seller_fen * 0.02)


def test_min_replicas_with_no_demand_at_all(
    make_pool: Callable[..., PoolState],
    make_service: Callable[..., InferenceService],
    make_snapshot: Callable[..., MarketSnapshot],
    clear: Callable[..., Decision],
) -> None:
    pools = [make_pool("yangtze-demo-zone", "H100", free_gpus=8, reserve=10.0)]
    idle = {"Shanghai": 0.0, "Hangzhou": 0.0}
    svc = make_service("idle", demand_rps=idle, ttft_ms=2000.0, min_replicas=1)
    out = outcome(clear(make_snapshot(pools, services=[svc])), "idle")
    assert [(r.replicas, r.required) for r in out.replicas] == [(1, 1)]
    assert out.served_rps == 0.0
    assert out.payment.seller_fen == round(10.0 * 1 * 0.25 * 100)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"bid_cny_per_m_input_tokens": -1.0}, "bid_cny_per_m_input_tokens must be"),
        ({"bid_cny_per_m_cached_input_tokens": float("nan")}, "bid_cny_per_m_cached_input"),
        ({"cached_fraction": 1.5}, "cached_fraction is the share"),
        ({"min_replicas": -1}, "min_replicas must be a whole number ≥ 0"),
        ({"max_replicas": 0}, "max_replicas must be a whole number ≥ max(1, min_replicas"),
        (
            {"min_replicas": 3, "max_replicas": 2},
            "max_replicas must be a whole number ≥ max(1, min_replicas = 3), got 2",
        ),
    ],
)
def test_bad_bids_and_bounds_are_refused(
    change: dict[str, Any],
    message: str,
    make_pool: Callable[..., PoolState],
    make_service: Callable[..., InferenceService],
    make_snapshot: Callable[..., MarketSnapshot],
    clear: Callable[..., Decision],
) -> None:
    svc = make_service("s", demand_rps={"Shanghai": 1.0}, ttft_ms=2000.0)
    bad = replace(svc, **change)
    snap = make_snapshot([make_pool("yangtze-demo-zone")], services=[bad])
    with pytest.raises(InvalidInput, match=re.escape(f"service s: {message}")):
        clear(snap)


# ------------------------------------------------------------ random markets: the bounds

CITIES = ("Shanghai", "Beijing", "Chengdu", "Lanzhou")
GPUS = ("H100", "H20", "A800", "L20")
SITES = ("yangtze-demo-zone", "zhongwei", "qingyang", "tianfu")


@st.composite
def one_service_markets(draw: st.DrawFn) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Pools of whole free nodes and one service with bounds; no jobs compete."""
    pools = [
        {
            "site": site,
            "gpu": draw(st.sampled_from(GPUS)),
            "free_gpus": 8 * draw(st.integers(0, 3)),
            "reserve": draw(st.sampled_from((2.0, 6.0, 10.0, 30.0))),
        }
        for site in draw(st.lists(st.sampled_from(SITES), min_size=1, max_size=4, unique=True))
    ]
    lo = draw(st.integers(0, 6))
    cities = draw(st.lists(st.sampled_from(CITIES), min_size=1, max_size=3, unique=True))
    svc = {
        "demand_rps": {c: draw(st.sampled_from((0.0, 0.05, 3.0, 40.0, 400.0))) for c in cities},
        "model": draw(st.sampled_from(("Llama-3.1-8B", "Qwen2.5-7B", "Llama-3.1-70B"))),
        "prompt_tokens": draw(st.sampled_from((300.0, 4000.0))),
        "ttft_ms": draw(st.sampled_from((150.0, 2000.0))),
        "bid": draw(st.sampled_from((0.0, 2.0, 8.0, 40.0))),
        "bid_cny_per_m_input_tokens": draw(st.sampled_from((0.0, 2.0))),
        "min_replicas": lo,
        "max_replicas": draw(st.none() | st.integers(max(1, lo), 8)),
    }
    return pools, svc


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(market=one_service_markets())
def test_the_exchange_keeps_the_bounds_on_random_markets(
    market: tuple[list[dict[str, Any]], dict[str, Any]],
    ctx: MarketContext,
    make_pool: Callable[..., PoolState],
    make_service: Callable[..., InferenceService],
    make_snapshot: Callable[..., MarketSnapshot],
    clear: Callable[..., Decision],
) -> None:
    pool_args, svc_args = market
    pools = [make_pool(**p) for p in pool_args]
    svc = make_service("s", **svc_args)
    snap = make_snapshot(pools, services=[svc], fee_rate=0.02)
    (out,) = clear(snap).services
    total = replicas(out)
    if svc.max_replicas is not None:
        assert total <= svc.max_replicas
    room = sum(_room_for(svc, p, snap, ctx) for p in pools)
    assert total >= min(svc.min_replicas, room), (total, room)


def _room_for(svc: InferenceService, pool: PoolState, snap: MarketSnapshot, ctx: Any) -> int:
    """Replicas of ``svc`` that fit ``pool`` within the SLO of its largest city."""
    if not svc.demand_rps:
        return 0
    city = min(svc.demand_rps, key=lambda c: (-svc.demand_rps[c], c))
    spec = replica_spec(
        ctx.models[svc.model],
        ctx.accelerators[pool.gpu],
        svc.prompt_tokens,
        svc.output_tokens,
        svc.ttft_ms,
        svc.tpot_ms,
    )
    late = rtt(ctx.cities[city], snap.sites[pool.site_id], ctx.latency).rtt_ms + spec.ttft_ms
    if spec.rps <= 0 or late > svc.ttft_ms:
        return 0
    return pool.free_gpus // spec.gpus


def test_the_random_markets_reach_both_bounds(
    make_pool: Callable[..., PoolState],
    make_service: Callable[..., InferenceService],
    make_snapshot: Callable[..., MarketSnapshot],
    clear: Callable[..., Decision],
) -> None:
    """Guard against vacuous properties: some draws need required replicas, some are
    capped by max_replicas."""
    seen: Counter[str] = Counter()

    @settings(max_examples=60, deadline=None, database=None, derandomize=True)
    @given(market=one_service_markets())
    def sample(market: tuple[list[dict[str, Any]], dict[str, Any]]) -> None:
        pool_args, svc_args = market
        svc = make_service("s", **svc_args)
        snap = make_snapshot([make_pool(**p) for p in pool_args], services=[svc])
        (out,) = clear(snap).services
        seen["required"] += sum(r.required for r in out.replicas) > 0
        seen["capped"] += replicas(out) == svc.max_replicas and bool(out.unserved)

    sample()
    assert seen["required"] > 0 and seen["capped"] > 0, seen
