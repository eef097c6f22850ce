"""The built-in synthetic national fleet: sites and GPU pools drawn from calibration data.

``generate_fleet`` is pure: calibration parameters (parsed from
``data/fleet_<name>.toml``), the catalogue and a seeded ``numpy.random.Generator`` in, a
``Fleet`` out. The same parameters, catalogue and seed always give the same fleet. Only
``load_fleet`` reads a file.

How one site is drawn (each step documented with its source in the TOML):

- location: a national cluster (coordinates, province, PUE from the catalogue) or a city
  given in the TOML; the site sits uniformly within ``jitter_km`` of its centre;
- PUE = cluster or province PUE + uniform [0, ``pue_spread``); power price = province's;
  WAN bandwidth and operator kind drawn from the location's profile;
- pools: k distinct GPU models drawn by the profile's weights; nodes per pool log-uniform
  in the card's range, scaled by the profile; pools of few nodes are cabled with ethernet;
- reserve (yuan per GPU-hour) = reference rent × (bf16 TFLOPS / reference's)^exponent ×
  region factor × lognormal noise, never below the power cost TDP_kW × PUE × power price;
- capex (yuan per GPU-hour) = server price / GPUs per server / (years × 8,760 h).
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import replace
from functools import lru_cache
from importlib import resources

import numpy as np

from suanli.catalog._fleet_params import FleetParams, GpuParams, LocationParams, parse_fleet_params
from suanli.catalog._load import load_catalog
from suanli.catalog._types import Catalog
from suanli.catalog.queries import accelerator, cluster, hub, power
from suanli.domain import Fabric, Fleet, Pool, PoolId, Site, SiteId
from suanli.errors import DataError, UnknownName

__all__ = [
    "FleetParams",
    "fleet_names",
    "generate_fleet",
    "load_fleet",
    "parse_fleet_params",
    "power_cost_cny_per_gpu_hour",
]

HOURS_PER_YEAR = 8760.0
KM_PER_DEG_LAT = 111.32


def power_cost_cny_per_gpu_hour(tdp_w: float, pue: float, price_cny_per_kwh: float) -> float:
    """Electricity cost of one GPU-hour at the wall: TDP_kW × PUE × power price."""
    return tdp_w / 1000.0 * pue * price_cny_per_kwh


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _ceil_cents(x: float) -> float:
    cents = math.ceil(x * 100.0) / 100.0
    return cents if cents >= x else cents + 0.01  # guard against float rounding in x * 100


def _pick(rng: np.random.Generator, weights: Mapping[str, float], k: int) -> list[str]:
    names = list(weights)
    w = np.array([weights[n] for n in names], dtype=float)
    chosen = rng.choice(len(names), size=k, replace=False, p=w / w.sum())
    return [names[int(i)] for i in chosen]


def _jitter(rng: np.random.Generator, lat: float, lon: float, km: float) -> tuple[float, float]:
    # sqrt makes the point uniform over the disc rather than bunched at its centre
    r_km = km * math.sqrt(rng.random())
    theta = 2.0 * math.pi * rng.random()
    dlat = r_km * math.cos(theta) / KM_PER_DEG_LAT
    dlon = r_km * math.sin(theta) / (KM_PER_DEG_LAT * math.cos(math.radians(lat)))
    return round(lat + dlat, 4), round(lon + dlon, 4)


def _draw_site(
    params: FleetParams, catalog: Catalog, loc: LocationParams, n: int, rng: np.random.Generator
) -> Site:
    profile = params.profiles[loc.profile]
    if loc.cluster is not None:
        cl = cluster(catalog, loc.cluster)
        province, lat, lon, base_pue = cl.province, cl.lat, cl.lon, cl.pue
        hub_id, cluster_id, city = cl.hub_id, cl.id, loc.city or cl.name
        region = hub(catalog, cl.hub_id).region
        tariff = power(catalog, province)
    else:
        assert loc.province is not None and loc.lat is not None and loc.lon is not None
        tariff = power(catalog, loc.province)
        province, lat, lon, base_pue = tariff.province, loc.lat, loc.lon, tariff.pue
        hub_id, cluster_id, city = None, None, loc.city or loc.id
        region = tariff.region
    site_lat, site_lon = _jitter(rng, lat, lon, loc.jitter_km)
    pue = round(base_pue + params.pue_spread * rng.random(), 2)
    operator = _pick(rng, profile.operators, 1)[0]
    wan_gbps = float(profile.wan_gbps[int(rng.integers(len(profile.wan_gbps)))])
    return Site(
        id=SiteId(f"{loc.id}-{n:02d}"),
        name=f"{city} DC {n:02d}",
        province=province,
        city=city,
        region=region,
        lat=site_lat,
        lon=site_lon,
        hub_id=hub_id,
        cluster_id=cluster_id,
        pue=pue,
        power_price_cny_per_kwh=tariff.price_cny_per_kwh,
        wan_gbps=wan_gbps,
        operator=operator,
    )


def _draw_pool(
    params: FleetParams,
    catalog: Catalog,
    site: Site,
    gpu: GpuParams,
    scale: float,
    rng: np.random.Generator,
) -> Pool:
    acc = accelerator(catalog, gpu.name)
    ref = accelerator(catalog, params.reference_gpu)
    log_nodes = rng.uniform(math.log(gpu.nodes_min), math.log(gpu.nodes_max))
    nodes = max(1, round(math.exp(log_nodes) * scale))
    fabric = Fabric.ETHERNET if nodes <= params.small_pool_max_nodes else gpu.fabric
    speed = acc.bf16_tflops / ref.bf16_tflops
    rent = (
        params.reference_rent_cny_per_gpu_hour
        * speed**params.speed_exponent
        * params.region_factor[site.region]
        * math.exp(rng.normal(0.0, params.noise_sigma))
    )
    floor = power_cost_cny_per_gpu_hour(acc.tdp_w, site.pue, site.power_price_cny_per_kwh)
    capex = gpu.server_price_cny / gpu.gpus_per_node / (params.amortization_years * HOURS_PER_YEAR)
    return Pool(
        id=PoolId(f"{site.id}/{_slug(acc.name)}"),
        site_id=site.id,
        gpu=acc.name,
        gpu_count=nodes * gpu.gpus_per_node,
        gpus_per_node=gpu.gpus_per_node,
        fabric=fabric,
        reserve_cny_per_gpu_hour=max(round(rent, 2), _ceil_cents(floor)),
        capex_cny_per_gpu_hour=round(capex, 2),
    )


def generate_fleet(params: FleetParams, catalog: Catalog, rng: np.random.Generator) -> Fleet:
    """Draw the fleet described by ``params``; same inputs and rng state → same fleet.

    Site ids are ``<location id>-NN`` (NN from 01), pool ids ``<site id>/<gpu slug>``;
    both depend only on ``params``, not on the draw. Raises ``UnknownName`` if a cluster,
    province or GPU named in ``params`` is not in ``catalog``.
    """
    sites: dict[SiteId, Site] = {}  # plain dicts: a Fleet must pickle (multiprocessing)
    pools: dict[PoolId, Pool] = {}
    gpu_order = list(params.gpus)
    for loc in params.locations:
        profile = params.profiles[loc.profile]
        for n in range(1, loc.sites + 1):
            site = _draw_site(params, catalog, loc, n, rng)
            sites[site.id] = site
            k = int(rng.integers(profile.pools_min, profile.pools_max + 1))
            names = sorted(_pick(rng, profile.gpu_weights, k), key=gpu_order.index)
            for name in names:
                pool = _draw_pool(params, catalog, site, params.gpus[name], profile.node_scale, rng)
                if pool.id in pools:
                    raise DataError(
                        f"fleet {params.name!r}: two GPUs of {site.id} map to {pool.id}"
                    )
                pools[pool.id] = pool
    return Fleet(
        name=params.name,
        sites=sites,
        pools=pools,
        description=params.description,
        meta={"synthetic": "true"},
    )


def _data_file(name: str) -> str:
    return f"fleet_{name.replace('-', '_')}.toml"


def fleet_names() -> list[str]:
    """Names of the built-in fleets (one ``data/fleet_<name>.toml`` each), sorted."""
    data = resources.files("suanli.catalog").joinpath("data")
    return sorted(
        f.name.removeprefix("fleet_").removesuffix(".toml").replace("_", "-")
        for f in data.iterdir()
        if f.name.startswith("fleet_") and f.name.endswith(".toml")
    )


@lru_cache(maxsize=16)
def load_fleet(name: str = "china-2025", seed: int | None = None) -> Fleet:
    """The built-in fleet ``name`` drawn with ``seed`` (the file's default seed if None).

    Cached: the same (name, seed) returns the same immutable object. Raises
    ``UnknownName`` for a name not in ``fleet_names()``.
    """
    if name not in fleet_names():
        raise UnknownName("fleet", name, fleet_names())
    path = resources.files("suanli.catalog").joinpath("data", _data_file(name))
    params = parse_fleet_params(tomllib.loads(path.read_text(encoding="utf-8")))
    if params.name != name:
        raise DataError(f"{_data_file(name)}: name is {params.name!r}, expected {name!r}")
    used_seed = params.default_seed if seed is None else seed
    fleet = generate_fleet(params, load_catalog(), np.random.default_rng(used_seed))
    meta = {**fleet.meta, "seed": str(used_seed), "params": f"suanli/catalog/data/{path.name}"}
    return replace(fleet, meta=meta)
