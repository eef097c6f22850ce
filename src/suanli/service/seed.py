"""Loading a built-in fleet into the exchange: sites, pools and open offers of one seller."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import insert
from sqlalchemy.orm import Session

from suanli.catalog import Catalog
from suanli.domain import Fleet
from suanli.perf.training import speed_factor
from suanli.service.tables import Offer, PoolRow, SiteRow, new_id

__all__ = ["load_fleet_rows"]


def load_fleet_rows(
    session: Session,
    fleet: Fleet,
    catalog: Catalog,
    seller_tenant_id: str,
    now: datetime,
    *,
    site_ids: Iterable[str] | None = None,
) -> tuple[int, int]:
    """Insert the fleet's sites and pools, each pool offered at its reserve from ``now``.

    Returns (sites, pools) inserted.
    """
    wanted = set(site_ids) if site_ids is not None else set(fleet.sites)
    sites = [s for s in fleet.sites.values() if s.id in wanted]
    pools = [p for p in fleet.pools.values() if p.site_id in wanted]
    if not sites:
        return 0, 0
    session.execute(
        insert(SiteRow),
        [
            {
                "id": s.id,
                "tenant_id": seller_tenant_id,
                "name": s.name,
                "province": s.province,
                "city": s.city,
                "region": s.region.value,
                "lat": s.lat,
                "lon": s.lon,
                "hub_id": s.hub_id,
                "cluster_id": s.cluster_id,
                "pue": s.pue,
                "power_price_cny_per_kwh": s.power_price_cny_per_kwh,
                "wan_gbps": s.wan_gbps,
                "up": True,
                "created_at": now,
            }
            for s in sites
        ],
    )
    if pools:
        session.execute(
            insert(PoolRow),
            [
                {
                    "id": p.id,
                    "site_id": p.site_id,
                    "tenant_id": seller_tenant_id,
                    "gpu": p.gpu,
                    "gpu_count": p.gpu_count,
                    "gpus_per_node": p.gpus_per_node,
                    "fabric": p.fabric.value,
                    "reserve_cny_per_gpu_hour": p.reserve_cny_per_gpu_hour,
                    "speed": speed_factor(catalog.accelerators[p.gpu]),
                    "created_at": now,
                }
                for p in pools
            ],
        )
        session.execute(
            insert(Offer),
            [
                {
                    "id": new_id("offer"),
                    "pool_id": p.id,
                    "tenant_id": seller_tenant_id,
                    "reserve_cny_per_gpu_hour": p.reserve_cny_per_gpu_hour,
                    "available_from": now,
                    "available_until": None,
                    "withdrawn_at": None,
                    "created_at": now,
                }
                for p in pools
            ],
        )
    return len(sites), len(pools)
