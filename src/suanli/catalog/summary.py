"""The national picture in numbers: a fleet's GPUs by model, hub and region."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from suanli.catalog._types import Catalog
from suanli.domain.catalog import Region
from suanli.domain.fleet import Fleet

__all__ = ["OUTSIDE_HUBS", "NationalSummary", "national_summary"]

# The hub key of sites that are in none of the 8 national hubs.
OUTSIDE_HUBS = "outside-hubs"


@dataclass(frozen=True, slots=True)
class NationalSummary:
    """Counts for one fleet against the catalogue. Mappings are sorted largest first."""

    fleet: str
    sites: int
    pools: int
    gpus: int
    gpus_by_model: Mapping[str, int]
    gpus_by_hub: Mapping[str, int]  # hub id, or OUTSIDE_HUBS
    gpus_by_region: Mapping[str, int]  # Region value: east / central / west
    hubs: int
    clusters: int
    cities: int
    accelerators: int
    models: int


def national_summary(cat: Catalog, fleet: Fleet) -> NationalSummary:
    """Count ``fleet``'s GPUs by accelerator model, by hub and by region.

    Every pool's GPUs are counted exactly once in each breakdown, so each mapping sums to
    ``gpus``. Every region appears (with 0 if empty); hubs with no GPUs are listed with 0.
    """
    by_model: Counter[str] = Counter()
    by_hub: Counter[str] = Counter({h: 0 for h in cat.hubs})
    by_region: Counter[str] = Counter({r.value: 0 for r in Region})
    for pool in fleet.pools.values():
        site = fleet.sites[pool.site_id]
        by_model[pool.gpu] += pool.gpu_count
        by_hub[site.hub_id or OUTSIDE_HUBS] += pool.gpu_count
        by_region[site.region.value] += pool.gpu_count
    return NationalSummary(
        fleet=fleet.name,
        sites=len(fleet.sites),
        pools=len(fleet.pools),
        gpus=fleet.gpu_count,
        gpus_by_model=_largest_first(by_model),
        gpus_by_hub=_largest_first(by_hub),
        gpus_by_region=_largest_first(by_region),
        hubs=len(cat.hubs),
        clusters=len(cat.clusters),
        cities=len(cat.cities),
        accelerators=len(cat.accelerators),
        models=len(cat.models),
    )


def _largest_first(counts: Counter[str]) -> dict[str, int]:
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
