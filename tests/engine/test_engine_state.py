"""ExchangeState: the round trip snapshot → clear → apply → advance, outages, money."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from suanli.domain import Fabric, Pool, PoolId, Region, Site, SiteId
from suanli.engine.ledger_rules import capture_share
from suanli.engine.lifecycle import WorkState
from suanli.engine.state import ExchangeState
from suanli.market.context import MarketContext
from suanli.market.decision import Payment
from suanli.market.policies import make_policy
from suanli.market.snapshot import BatchJob, BuyerId, JobId, MarketRules


@pytest.fixture(scope="module")
def ctx() -> MarketContext:
    from suanli.bench.instances import market_context

    return market_context()


def _state(reserve: float = 10.0, nodes: int = 2) -> ExchangeState:
    site = Site(
        id=SiteId("zw-1"),
        name="zw-1",
        province="Ningxia",
        city="Zhongwei",
        region=Region.WEST,
        lat=37.5,
        lon=105.2,
        hub_id="ningxia",
        cluster_id="zhongwei",
        pue=1.1,
        power_price_cny_per_kwh=0.36,
        wan_gbps=100.0,
        operator="test",
    )
    pool = Pool(
        id=PoolId("zw-1/h800"),
        site_id=site.id,
        gpu="H800",
        gpu_count=8 * nodes,
        gpus_per_node=8,
        fabric=Fabric.INFINIBAND,
        reserve_cny_per_gpu_hour=reserve,
        capex_cny_per_gpu_hour=6.0,
    )
    return ExchangeState({site.id: site}, [pool], {pool.id: 1.0}, rules=MarketRules(fee_rate=0.0))


def _job(i: int, gpus: int = 8, work: float = 16.0, bid: float = 15.0) -> BatchJob:
    return BatchJob(
        id=JobId(f"j{i}"),
        buyer=BuyerId("acme"),
        gpus=gpus,
        work_ref_gpu_hours=work,
        bid_cny_per_ref_gpu_hour=bid,
        origin_city="Shanghai",
    )


def test_round_trip_runs_and_finishes(ctx: MarketContext) -> None:
    s = _state()
    s.submit_job(_job(1), 0.0)  # 8 GPUs × speed 1.0 → 16 ref GPU-h take 2 h
    decision = make_policy("exchange", ctx).clear(s.snapshot(0.0))
    s.apply(decision, 0.0)
    assert s.jobs["j1"].state is WorkState.RUNNING
    assert s.snapshot(0.5).pools[0].free_gpus == 8  # one of two nodes taken
    transitions, usage = s.advance(1.0)
    assert transitions == [] and usage == []  # not done yet
    transitions, usage = s.advance(2.5)
    assert [t.to for t in transitions] == [WorkState.SUCCEEDED]
    assert transitions[0].at_h == pytest.approx(2.0)  # finished when the work was done
    assert usage[0].gpu_hours == pytest.approx(16.0)  # 8 GPUs × 2 h
    # Delivered in full: the capture equals the planned payment.
    assert usage[0].charge == decision.jobs[0].payment
    assert s.snapshot(3.0).pools[0].free_gpus == 16


def test_outage_preempts_and_keeps_checkpointed_progress(ctx: MarketContext) -> None:
    s = _state()
    s.submit_job(_job(1, work=80.0), 0.0, checkpoint_every_h=1.0)  # 10 h on 8 GPUs
    s.apply(make_policy("exchange", ctx).clear(s.snapshot(0.0)), 0.0)
    moves = s.fail_site("zw-1", 3.7, "site zw-1 missed heartbeats")
    assert [t.to for t in moves] == [WorkState.PREEMPTED, WorkState.PENDING]
    assert moves[0].reason == "site zw-1 missed heartbeats"
    # 3.7 h ran, checkpoints every hour → 3 h kept × 8 GPUs × speed 1 = 24 ref GPU-h.
    assert s.jobs["j1"].done_ref_gpu_hours == pytest.approx(24.0)
    assert s.snapshot(4.0).pools == ()  # the site is down: nothing to sell
    s.recover_site("zw-1")
    snap = s.snapshot(5.0)
    assert snap.jobs[0].work_ref_gpu_hours == pytest.approx(56.0)  # 80 − 24 left
    assert snap.pools[0].free_gpus == 16


def test_cancel_releases_gpus_and_captures_only_delivered(ctx: MarketContext) -> None:
    s = _state()
    s.submit_job(_job(1), 0.0)  # planned 2 h
    d = make_policy("exchange", ctx).clear(s.snapshot(0.0))
    s.apply(d, 0.0)
    s.cancel("j1", 0.5)
    charge = s.usage[-1].charge
    planned = d.jobs[0].payment
    assert charge.seller_fen == round(planned.seller_fen * 0.25)  # 0.5 of 2 h delivered
    assert charge.buyer_fen + charge.voucher_fen == charge.seller_fen + charge.fee_fen
    assert s.snapshot(1.0).pools[0].free_gpus == 16
    assert s.jobs["j1"].state is WorkState.CANCELLED


def test_pending_job_fails_at_its_deadline_with_the_reasons(ctx: MarketContext) -> None:
    s = _state(reserve=20.0)  # reserve above every bid
    s.submit_job(_deadline_job(), 0.0)
    s.apply(make_policy("exchange", ctx).clear(s.snapshot(0.0)), 0.0)
    assert s.jobs["j1"].state is WorkState.PENDING
    transitions, _ = s.advance(2.0)
    assert transitions[0].to is WorkState.FAILED
    assert "price: bid 15.00" in transitions[0].reason


def _deadline_job() -> BatchJob:
    return BatchJob(
        id=JobId("j1"),
        buyer=BuyerId("acme"),
        gpus=8,
        work_ref_gpu_hours=1.0,
        bid_cny_per_ref_gpu_hour=15.0,
        origin_city="Shanghai",
        deadline_h=2.0,
    )


@given(
    seller=st.integers(0, 10**7),
    fee=st.integers(0, 10**5),
    voucher_share=st.floats(0, 1),
    share=st.floats(-0.5, 1.5, allow_nan=False),
)
def test_capture_share_balances_and_never_exceeds_the_hold(
    seller: int, fee: int, voucher_share: float, share: float
) -> None:
    voucher = int((seller + fee) * voucher_share)
    planned = Payment(
        buyer_fen=seller + fee - voucher, voucher_fen=voucher, seller_fen=seller, fee_fen=fee
    )
    got = capture_share(planned, share)
    assert got.buyer_fen + got.voucher_fen == got.seller_fen + got.fee_fen
    assert 0 <= got.seller_fen <= planned.seller_fen
    assert 0 <= got.voucher_fen <= planned.voucher_fen
    assert 0 <= got.buyer_fen <= planned.buyer_fen
    assert got.fee_fen <= planned.fee_fen


def test_capture_share_found_case() -> None:
    # Found by the service's tests: hold buyer 5 / voucher 129 / seller 67 / fee 67 at share
    # 0.9649: seller 65, fee 65, voucher round(124.47) = 124 → buyer would be 6 > hold 5;
    # the voucher takes the fen instead: buyer 5, voucher 125.
    got = capture_share(Payment(5, 129, 67, 67), 0.9649)
    assert (got.buyer_fen, got.voucher_fen, got.seller_fen, got.fee_fen) == (5, 125, 65, 65)
