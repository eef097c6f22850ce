"""The simulated world: a fleet (built-in or drawn from a parameters file, plus additions),
the catalogue context, and per-pool constants the simulator needs every round.

Per pool (index-aligned with ``pool_ids``): speed in reference GPUs, capacity, power cost
per GPU-hour (TDP_kW × PUE × power price, the floor under any reserve), kWh per delivered
GPU-hour (TDP_kW × PUE), capital cost per GPU-hour, and the hub it belongs to.
"""

from __future__ import annotations

import re
import statistics
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

from suanli.catalog import Catalog, load_catalog
from suanli.catalog.fleet import generate_fleet, load_fleet, parse_fleet_params
from suanli.catalog.queries import accelerator, cluster, hub, power
from suanli.domain import Fleet, Pool, PoolId, Site, SiteId
from suanli.errors import DataError, InvalidInput
from suanli.market.context import MarketContext
from suanli.market.snapshot import MarketRules
from suanli.perf.training import speed_factor
from suanli.sim.scenario import PoolAddition, Scenario, SiteAddition

__all__ = ["EMPTY_FLEET", "OUTSIDE", "World", "build_world"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

OUTSIDE = "outside"
"""Hub label of sites outside the national hubs."""

EMPTY_FLEET = "none"
"""``fleet.name`` of a fleet built only from ``add_sites`` and ``add_pools``."""


@dataclass(frozen=True)
class World:
    fleet: Fleet
    ctx: MarketContext
    rules: MarketRules
    pool_ids: list[str]
    pool_site: list[str]
    pool_hub: list[str]
    capacity_gpus: I64
    speed: F64
    power_cost_cny_per_gpu_hour: F64
    kwh_per_gpu_hour: F64
    capex_cny_per_gpu_hour: F64
    hubs: list[str]  # hub ids present, in catalogue order, then OUTSIDE

    @property
    def pool_index(self) -> dict[str, int]:
        return {p: i for i, p in enumerate(self.pool_ids)}


def build_world(scenario: Scenario) -> World:
    """Fleet, context and per-pool constants for ``scenario``; InvalidInput on bad names."""
    cat = load_catalog()
    fleet = _fleet(scenario, cat)
    fleet = _with_additions(fleet, scenario, cat)
    if not fleet.pools:
        raise InvalidInput(f"scenario {scenario.name!r}: the fleet has no GPU pools")
    ctx = MarketContext(
        accelerators=cat.accelerators, models=cat.models, cities=cat.cities, hubs=cat.hubs
    )
    pools = list(fleet.pools.values())
    sites = fleet.sites
    acc = [cat.accelerators[p.gpu] for p in pools]
    pue = np.array([sites[p.site_id].pue for p in pools])
    tdp_kw = np.array([a.tdp_w / 1000.0 for a in acc])
    price = np.array([sites[p.site_id].power_price_cny_per_kwh for p in pools])
    pool_hub = [sites[p.site_id].hub_id or OUTSIDE for p in pools]
    present = set(pool_hub)
    hubs = [h for h in cat.hubs if h in present] + ([OUTSIDE] if OUTSIDE in present else [])
    period_h = scenario.market.period_min / 60.0
    rules = MarketRules(
        fee_rate=scenario.market.fee_rate,
        # a replica is paid for the period it runs before the next round re-clears it
        service_horizon_h=period_h,
        candidate_pools=scenario.market.candidate_pools,
    )
    return World(
        fleet=fleet,
        ctx=ctx,
        rules=rules,
        pool_ids=[p.id for p in pools],
        pool_site=[p.site_id for p in pools],
        pool_hub=pool_hub,
        capacity_gpus=np.array([p.nodes * p.gpus_per_node for p in pools], dtype=np.int64),
        speed=np.array([speed_factor(a) for a in acc]),
        power_cost_cny_per_gpu_hour=tdp_kw * pue * price,
        kwh_per_gpu_hour=tdp_kw * pue,
        capex_cny_per_gpu_hour=np.array([p.capex_cny_per_gpu_hour for p in pools]),
        hubs=hubs,
    )


def _fleet(scenario: Scenario, cat: Catalog) -> Fleet:
    spec = scenario.fleet
    if spec.params_file is None and spec.name == EMPTY_FLEET:
        return Fleet(name=EMPTY_FLEET, sites={}, pools={})
    if spec.params_file is None:
        return load_fleet(spec.name, spec.seed)
    path = Path(spec.params_file)
    if not path.is_absolute() and scenario.base_dir is not None:
        path = Path(scenario.base_dir) / path
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInput(f"fleet.params_file: {path}: no such file") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InvalidInput(f"fleet.params_file: {path}: {exc}") from None
    try:
        params = parse_fleet_params(raw)
        seed = params.default_seed if spec.seed is None else spec.seed
        return generate_fleet(params, cat, np.random.default_rng(seed))
    except DataError as exc:
        raise InvalidInput(f"fleet.params_file: {path}: {exc}") from None


def _with_additions(fleet: Fleet, scenario: Scenario, cat: Catalog) -> Fleet:
    spec = scenario.fleet
    if not spec.add_sites and not spec.add_pools:
        return fleet
    sites = dict(fleet.sites)
    pools = dict(fleet.pools)
    for i, sa in enumerate(spec.add_sites):
        if sa.id in sites:
            raise InvalidInput(f"fleet.add_sites.{i}: site {sa.id!r} already exists")
        sites[SiteId(sa.id)] = _site(sa, cat)
    for i, pa in enumerate(spec.add_pools):
        if pa.site not in sites:
            raise InvalidInput(
                f"fleet.add_pools.{i}: site {pa.site!r} is neither in the fleet nor in add_sites"
            )
        pool = _pool(pa, sites[SiteId(pa.site)], fleet, cat)
        if pool.id in pools:
            # more GPUs of a model a site already has: one bigger pool
            old = pools[pool.id]
            pool = replace(old, gpu_count=old.gpu_count + pool.gpu_count)
        pools[pool.id] = pool
    return replace(fleet, sites=sites, pools=pools, name=f"{fleet.name}+{scenario.name}")


def _site(sa: SiteAddition, cat: Catalog) -> Site:
    hub_id: str | None
    cluster_id: str | None
    if sa.cluster is not None:
        cl = cluster(cat, sa.cluster)
        province, lat, lon, base_pue = cl.province, cl.lat, cl.lon, cl.pue
        hub_id, cluster_id, city = cl.hub_id, cl.id, sa.city or cl.name
        region = hub(cat, cl.hub_id).region
    else:
        assert sa.province is not None and sa.lat is not None and sa.lon is not None
        tariff = power(cat, sa.province)
        province, lat, lon, base_pue = tariff.province, sa.lat, sa.lon, tariff.pue
        hub_id = next((h.id for h in cat.hubs.values() if province in h.provinces), None)
        cluster_id, city, region = None, sa.city or sa.id, tariff.region
    tariff = power(cat, province)
    return Site(
        id=SiteId(sa.id),
        name=sa.name or sa.id,
        province=province,
        city=city,
        region=region,
        lat=lat,
        lon=lon,
        hub_id=hub_id,
        cluster_id=cluster_id,
        pue=sa.pue if sa.pue is not None else base_pue,
        power_price_cny_per_kwh=(
            sa.power_price_cny_per_kwh
            if sa.power_price_cny_per_kwh is not None
            else tariff.price_cny_per_kwh
        ),
        wan_gbps=sa.wan_gbps,
        operator=sa.operator,
    )


def _pool(pa: PoolAddition, site: Site, fleet: Fleet, cat: Catalog) -> Pool:
    acc = accelerator(cat, pa.gpu)
    same = [p for p in fleet.pools.values() if p.gpu == acc.name]
    floor = acc.tdp_w / 1000.0 * site.pue * site.power_price_cny_per_kwh
    if pa.reserve_cny_per_gpu_hour is not None:
        reserve = pa.reserve_cny_per_gpu_hour
    elif same:
        reserve = statistics.median(p.reserve_cny_per_gpu_hour for p in same)
    else:
        raise InvalidInput(
            f"add_pools: no {acc.name} pool in the fleet to copy a reserve from; "
            "give reserve_cny_per_gpu_hour"
        )
    if pa.capex_cny_per_gpu_hour is not None:
        capex = pa.capex_cny_per_gpu_hour
    elif same:
        capex = statistics.median(p.capex_cny_per_gpu_hour for p in same)
    else:
        raise InvalidInput(
            f"add_pools: no {acc.name} pool in the fleet to copy a capex from; "
            "give capex_cny_per_gpu_hour"
        )
    nodes = -(-pa.gpus // pa.gpus_per_node)
    slug = re.sub(r"[^a-z0-9]+", "-", acc.name.lower()).strip("-")
    return Pool(
        id=PoolId(f"{site.id}/{slug}"),
        site_id=site.id,
        gpu=acc.name,
        gpu_count=nodes * pa.gpus_per_node,
        gpus_per_node=pa.gpus_per_node,
        fabric=pa.fabric,
        reserve_cny_per_gpu_hour=round(max(reserve, floor), 2),
        capex_cny_per_gpu_hour=round(capex, 2),
    )
