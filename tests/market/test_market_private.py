"""A private site (``Site.private_to``) takes work only from its one buyer, under every
policy; others see it as a reason, never as a placement."""

from __future__ import annotations

import dataclasses

import pytest

from suanli.market.decision import ReasonCode

YZ = "yangtze-demo-zone"  # Shanghai
ZW = "zhongwei"  # Ningxia
POLICIES = ("exchange", "local", "cheapest", "nearest", "milp", "lp-bound")


@pytest.mark.parametrize("policy", POLICIES)
def test_private_pool_serves_only_its_buyer(
    policy, make_pool, make_job, make_snapshot, clear
) -> None:
    # Shanghai's pool (reserve 2) is private to "home"; Zhongwei's (reserve 6) is open.
    # "guest" bids 10 and would rather have the cheap pool; it must take the open one.
    snap = make_snapshot(
        [make_pool(YZ, reserve=2.0, free_gpus=8), make_pool(ZW, reserve=6.0, free_gpus=8)],
        [make_job("guest", bid=10.0, buyer="guest"), make_job("own", bid=10.0, buyer="home")],
    )
    snap = dataclasses.replace(
        snap, sites={**snap.sites, YZ: dataclasses.replace(snap.sites[YZ], private_to="home")}
    )
    d = clear(snap, policy)
    on = {p.job_id: p.pool_id for p in d.jobs}
    assert on.get("guest") != f"{YZ}/H100"
    if policy != "lp-bound":  # the bound places nothing integrally
        assert on["own"] == f"{YZ}/H100"


def test_a_buyer_shut_out_of_a_private_site_is_told_why(
    make_pool, make_job, make_service, make_snapshot, clear
) -> None:
    snap = make_snapshot(
        [make_pool(YZ, reserve=2.0, free_gpus=8)],
        [make_job("guest", bid=10.0, buyer="guest")],
        [make_service("chat", demand_rps={"Shanghai": 1.0}, ttft_ms=2000, buyer="guest")],
    )
    snap = dataclasses.replace(
        snap, sites={YZ: dataclasses.replace(snap.sites[YZ], private_to="home")}
    )
    d = clear(snap)
    assert not d.jobs and not d.services[0].replicas
    job = next(u for u in d.unplaced if u.item_id == "guest")
    assert [(r.code, r.pools) for r in job.reasons] == [(ReasonCode.PRIVATE, 1)]
    assert "only from its own tenant" in job.reasons[0].message
    assert [r.code for r in d.services[0].unserved["Shanghai"]] == [ReasonCode.PRIVATE]
