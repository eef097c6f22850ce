"""A fleet: data-center sites and their GPU pools (site × GPU model)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NewType

from suanli.domain.catalog import Fabric, Region

SiteId = NewType("SiteId", str)
PoolId = NewType("PoolId", str)


@dataclass(frozen=True, slots=True)
class Site:
    """A data center selling capacity.

    ``hub_id``/``cluster_id`` are None for sites outside the national hubs.
    ``wan_gbps`` is the site's WAN bandwidth for moving job data in.
    ``capex_cny_per_gpu_hour`` is the amortized capital cost of one of its GPUs, used by
    reports to show distressed sites. ``private_to``: a site that takes work only from
    this one buyer (None: from any).
    """

    id: SiteId
    name: str
    province: str
    city: str
    region: Region
    lat: float
    lon: float
    hub_id: str | None
    cluster_id: str | None
    pue: float
    power_price_cny_per_kwh: float
    wan_gbps: float
    operator: str
    private_to: str | None = None


@dataclass(frozen=True, slots=True)
class Pool:
    """GPUs of one model at one site: the unit the market prices."""

    id: PoolId
    site_id: SiteId
    gpu: str
    gpu_count: int
    gpus_per_node: int
    fabric: Fabric
    reserve_cny_per_gpu_hour: float
    capex_cny_per_gpu_hour: float

    @property
    def nodes(self) -> int:
        return self.gpu_count // self.gpus_per_node


@dataclass(frozen=True, slots=True)
class Fleet:
    """A named set of sites and pools. Lookups are by id."""

    name: str
    sites: Mapping[SiteId, Site]
    pools: Mapping[PoolId, Pool]
    description: str = ""
    meta: Mapping[str, str] = field(default_factory=dict)

    def pools_of(self, site_id: SiteId) -> list[Pool]:
        return [p for p in self.pools.values() if p.site_id == site_id]

    @property
    def gpu_count(self) -> int:
        return sum(p.gpu_count for p in self.pools.values())
