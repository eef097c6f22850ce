"""The national summary counts every GPU once in each breakdown."""

from __future__ import annotations

from suanli.catalog import OUTSIDE_HUBS, load_catalog, national_summary
from suanli.domain import Fabric, Fleet, Pool, PoolId, Region, Site, SiteId

CAT = load_catalog()


def _site(sid: str, region: Region, hub_id: str | None) -> Site:
    return Site(
        id=SiteId(sid), name=sid, province="Gansu", city="Qingyang", region=region,
        lat=35.7, lon=107.6, hub_id=hub_id, cluster_id=None, pue=1.1,
        power_price_cny_per_kwh=0.4, wan_gbps=100, operator="test",
    )  # fmt: skip


def _pool(pid: str, sid: str, gpu: str, n: int) -> Pool:
    return Pool(
        id=PoolId(pid), site_id=SiteId(sid), gpu=gpu, gpu_count=n, gpus_per_node=8,
        fabric=Fabric.ROCE, reserve_cny_per_gpu_hour=10, capex_cny_per_gpu_hour=8,
    )  # fmt: skip


def test_counts_by_model_hub_and_region() -> None:
    sites = [_site("a", Region.WEST, "gansu"), _site("b", Region.EAST, None)]
    pools = [_pool("a1", "a", "H800", 64), _pool("a2", "a", "Ascend 910B", 32)]
    pools.append(_pool("b1", "b", "H800", 16))
    fleet = Fleet(name="tiny", sites={s.id: s for s in sites}, pools={p.id: p for p in pools})
    s = national_summary(CAT, fleet)
    assert (s.sites, s.pools, s.gpus) == (2, 3, 112)  # 64 + 32 + 16
    assert s.gpus_by_model == {"H800": 80, "Ascend 910B": 32}  # H800: 64 + 16
    assert list(s.gpus_by_model) == ["H800", "Ascend 910B"]  # largest first
    assert s.gpus_by_hub["gansu"] == 96  # 64 + 32
    assert s.gpus_by_hub[OUTSIDE_HUBS] == 16
    assert s.gpus_by_hub["ningxia"] == 0  # every hub listed, even empty
    assert s.gpus_by_region == {"west": 96, "east": 16, "central": 0}
    assert (s.hubs, s.clusters) == (8, 10)
