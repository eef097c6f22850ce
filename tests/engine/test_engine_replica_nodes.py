"""Applying decisions onto concrete nodes: multi-node replicas, order, best fit.

(Added with the simulator: a 16-GPU DeepSeek replica on 8-GPU nodes, and decisions the
market packed in another order than the engine applies them, used to raise ValueError.)
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from suanli.domain import Fabric, Pool, PoolId, Region, Site, SiteId
from suanli.engine.nodes import PoolNodes
from suanli.engine.state import ExchangeState
from suanli.market.decision import (
    Decision,
    Payment,
    PoolPrice,
    ReplicaPlacement,
    ServiceOutcome,
)
from suanli.market.snapshot import BuyerId, InferenceService, ServiceId


def _state(nodes: int, free: list[int] | None = None) -> ExchangeState:
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
        reserve_cny_per_gpu_hour=10.0,
        capex_cny_per_gpu_hour=6.0,
    )
    s = ExchangeState({site.id: site}, [pool], {pool.id: 1.0})
    if free is not None:
        s.nodes[pool.id].free = list(free)
    s.submit_service(
        InferenceService(
            id=ServiceId("svc"),
            buyer=BuyerId("acme"),
            model="DeepSeek-V3",
            demand_rps={"Shanghai": 1.0},
            prompt_tokens=1000,
            output_tokens=200,
            ttft_ms=2000,
            tpot_ms=80,
            bid_cny_per_m_output_tokens=8,
        )
    )
    return s


def _decision(*replicas: tuple[int, int]) -> Decision:
    """A decision placing (replicas, GPUs per replica) groups of one service on zw-1/h800."""
    zero = Payment(buyer_fen=0, voucher_fen=0, seller_fen=0, fee_fen=0)
    placements = tuple(
        ReplicaPlacement(
            service_id="svc",
            pool_id=PoolId("zw-1/h800"),
            replicas=n,
            gpus_per_replica=g,
            capacity_rps_per_replica=1.0,
        )
        for n, g in replicas
    )
    outcome = ServiceOutcome(
        service_id="svc",
        buyer="acme",
        replicas=placements,
        routes=(),
        demand_rps=1.0,
        served_rps=1.0,
        payment=zero,
    )
    price = PoolPrice(
        pool_id=PoolId("zw-1/h800"),
        price_cny_per_gpu_hour=10.0,
        reserve_cny_per_gpu_hour=10.0,
        scarcity_rent_cny_per_gpu_hour=0.0,
        gpus_sold=0,
        free_gpus_after=0,
    )
    return Decision(
        policy="test",
        jobs=(),
        services=(outcome,),
        unplaced=(),
        prices=(price,),
        welfare_cny_per_hour=0.0,
    )


def test_a_sixteen_gpu_replica_takes_two_whole_nodes() -> None:
    s = _state(nodes=3)
    s.apply(_decision((1, 16)), 0.0)
    (alloc,) = s.services["svc"].replicas
    assert alloc.nodes == ((0, 8), (1, 8))  # two whole nodes, lowest indexes first
    assert s.nodes["zw-1/h800"].free == [0, 0, 8]


def test_pieces_are_taken_biggest_first() -> None:
    # Free GPUs per node [3, 4]: the market fitted a 3-GPU replica on the 3-node and two
    # 2-GPU replicas on the 4-node. Taken in decision order (2, 2, 3), best fit would put
    # the first 2 on the 3-node and strand the 3-GPU replica.
    s = _state(nodes=2, free=[3, 4])
    s.apply(_decision((2, 2), (1, 3)), 0.0)
    assert len(s.services["svc"].replicas) == 3
    assert s.nodes["zw-1/h800"].free == [0, 0]


def test_a_replica_that_cannot_be_found_on_nodes_is_skipped_not_fatal() -> None:
    s = _state(nodes=2, free=[3, 3])
    s.apply(_decision((2, 4)), 0.0)  # 8 GPUs free, but no node holds 4
    assert s.services["svc"].replicas == []
    assert s.nodes["zw-1/h800"].free == [3, 3]


def _reference_best_fit(free: list[int], up: list[bool], n: int) -> int:
    best = -1
    for i, (f, u) in enumerate(zip(free, up, strict=True)):
        if u and f >= n and (best < 0 or f < free[best]):
            best = i
    return best


@given(
    st.integers(1, 8).flatmap(
        lambda gpn: st.tuples(
            st.just(gpn),
            st.lists(st.tuples(st.integers(0, gpn), st.booleans()), min_size=1, max_size=12),
            st.integers(1, gpn + 1),
        )
    )
)
def test_best_fit_is_the_fullest_up_node_that_holds_it(
    case: tuple[int, list[tuple[int, bool]], int],
) -> None:
    gpn, nodes, n = case
    p = PoolNodes(len(nodes), gpn)
    p.free = [f for f, _ in nodes]
    p.up = [u for _, u in nodes]
    expected = _reference_best_fit(p.free, p.up, n)
    if expected < 0:
        try:
            p.take((n,))
        except ValueError:
            return
        raise AssertionError("took GPUs that no node had")
    assert p.take((n,)) == ((expected, n),)
