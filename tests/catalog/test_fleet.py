"""The built-in synthetic fleet: calibration, invariants, determinism and the pricing rule."""

from __future__ import annotations

import copy
import math
import pickle
import tomllib
from collections import Counter
from importlib import resources
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from suanli.catalog import Catalog, accelerator, load_catalog
from suanli.catalog.fleet import (
    fleet_names,
    generate_fleet,
    load_fleet,
    parse_fleet_params,
    power_cost_cny_per_gpu_hour,
)
from suanli.domain import Fabric, Fleet, Region
from suanli.errors import DataError, UnknownName

# mainland China's bounding box (Hainan to Heilongjiang, Xinjiang to the coast)
LAT_MIN, LAT_MAX, LON_MIN, LON_MAX = 18.0, 54.0, 73.0, 135.0
OPERATORS = {"carrier", "state-owned", "private", "local-government"}


def raw_params() -> dict[str, Any]:
    text = resources.files("suanli.catalog").joinpath("data", "fleet_china_2025.toml").read_text()
    return tomllib.loads(text)


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return load_fleet()


def km_between(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(a))


def check_invariants(fleet: Fleet, catalog: Catalog) -> None:
    """What every generated fleet promises, whatever the seed."""
    for site in fleet.sites.values():
        assert LAT_MIN <= site.lat <= LAT_MAX and LON_MIN <= site.lon <= LON_MAX, site
        assert site.operator in OPERATORS
        assert 1.0 < site.pue < 1.6 and site.wan_gbps > 0
    for pool_id, pool in fleet.pools.items():
        assert pool_id == pool.id and pool.site_id in fleet.sites
        assert pool.id.startswith(f"{pool.site_id}/")
        assert pool.gpu in catalog.accelerators  # canonical catalogue name
        assert pool.gpu_count > 0 and pool.gpu_count % pool.gpus_per_node == 0
        site = fleet.sites[pool.site_id]
        acc = catalog.accelerators[pool.gpu]
        power = power_cost_cny_per_gpu_hour(acc.tdp_w, site.pue, site.power_price_cny_per_kwh)
        assert pool.reserve_cny_per_gpu_hour >= power, (pool, power)
        assert pool.capex_cny_per_gpu_hour > 0
        if pool.nodes <= 2:
            assert pool.fabric is Fabric.ETHERNET


def test_fleet_names_and_unknown_name() -> None:
    assert fleet_names() == ["china-2025"]
    with pytest.raises(UnknownName) as err:
        load_fleet("china-2052")
    assert err.value.suggestions == ["china-2025"]


def test_load_fleet_is_cached_and_records_its_seed(fleet: Fleet) -> None:
    assert load_fleet() is fleet
    assert fleet.name == "china-2025" and fleet.description
    assert fleet.meta["seed"] == "2025" and fleet.meta["synthetic"] == "true"
    assert load_fleet(seed=7).meta["seed"] == "7"


def test_same_seed_same_fleet_and_ids_stable_across_seeds(catalog: Catalog) -> None:
    params = parse_fleet_params(raw_params())
    a = generate_fleet(params, catalog, np.random.default_rng(11))
    b = generate_fleet(params, catalog, np.random.default_rng(11))
    c = generate_fleet(params, catalog, np.random.default_rng(12))
    assert a == b
    assert list(a.pools) == list(b.pools)
    assert a != c
    assert list(a.sites) == list(c.sites)  # site ids do not depend on the draw
    assert load_fleet(seed=2025) == load_fleet()


def test_invariants_default_fleet(fleet: Fleet, catalog: Catalog) -> None:
    check_invariants(fleet, catalog)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**32 - 1))
def test_invariants_any_seed(seed: int) -> None:
    catalog = load_catalog()
    fleet = generate_fleet(parse_fleet_params(raw_params()), catalog, np.random.default_rng(seed))
    check_invariants(fleet, catalog)


def test_calibration_counts(fleet: Fleet) -> None:
    # DESIGN: at least 150 AI data centres finished by end 2024
    assert 140 <= len(fleet.sites) <= 170
    # the clearing benchmark needs a national instance with >= 600 pools
    assert len(fleet.pools) >= 600
    # synthetic national total: 100k–200k accelerators
    assert 100_000 <= fleet.gpu_count <= 200_000
    assert min(p.gpu_count for p in fleet.pools.values()) < 100  # dozens ...
    assert max(p.gpu_count for p in fleet.pools.values()) >= 1000  # ... to thousands


def test_most_gpus_are_in_the_west(fleet: Fleet) -> None:
    by_region: Counter[Region] = Counter()
    for pool in fleet.pools.values():
        by_region[fleet.sites[pool.site_id].region] += pool.gpu_count
    assert by_region[Region.WEST] > fleet.gpu_count / 2
    assert by_region[Region.EAST] > 0 and by_region[Region.CENTRAL] > 0


def test_every_cluster_has_sites_and_some_sites_are_outside_hubs(
    fleet: Fleet, catalog: Catalog
) -> None:
    per_cluster = Counter(s.cluster_id for s in fleet.sites.values())
    assert set(catalog.clusters) <= set(per_cluster)
    outside = [s for s in fleet.sites.values() if s.hub_id is None]
    assert len(outside) >= 20
    assert {"Henan", "Hubei", "Shaanxi", "Xinjiang"} <= {s.province for s in outside}


def test_sites_sit_near_their_cluster_with_its_province_and_region(
    fleet: Fleet, catalog: Catalog
) -> None:
    for site in fleet.sites.values():
        if site.cluster_id is None:
            continue
        cl = catalog.clusters[site.cluster_id]
        assert km_between(site.lat, site.lon, cl.lat, cl.lon) <= 15.5  # largest jitter_km is 15
        assert site.province == cl.province and site.hub_id == cl.hub_id
        assert site.region is catalog.hubs[cl.hub_id].region
        assert cl.pue <= site.pue <= cl.pue + 0.05  # pue_spread = 0.05
        assert site.power_price_cny_per_kwh == catalog.power[cl.province].price_cny_per_kwh


def test_fabrics_follow_the_card(fleet: Fleet) -> None:
    big = [p for p in fleet.pools.values() if p.nodes > 2]
    assert {p.fabric for p in big if p.gpu in ("H800", "A800")} == {Fabric.INFINIBAND}
    assert {p.fabric for p in big if p.gpu in ("H20", "Ascend 910B")} == {Fabric.ROCE}
    assert {p.fabric for p in big if p.gpu in ("RTX 4090", "L20")} == {Fabric.ETHERNET}


def test_fleet_pickles(fleet: Fleet) -> None:
    assert pickle.loads(pickle.dumps(fleet)) == fleet


def one_site_params(gpu: str, **pricing: float) -> dict[str, Any]:
    """One Qingyang site with one pool of ``gpu``, no noise and PUE exactly 1.07."""
    raw = raw_params()
    raw["pricing"] |= {"noise_sigma": 0.0, **pricing}
    raw["sites"] |= {"pue_spread": 0.0}
    raw["profiles"] = [
        {
            "id": "only",
            "pools": [1, 1],
            "node_scale": 1.0,
            "wan_gbps": [10],
            "operators": {"carrier": 1},
            "gpu_weights": {gpu: 1},
        }
    ]
    raw["locations"] = [{"id": "qy", "cluster": "qingyang", "profile": "only", "sites": 1}]
    return raw


@pytest.mark.parametrize(
    ("gpu", "pricing", "reserve", "capex"),
    [
        # 13.0 x (989/989)^0.7 x west 0.9 = 11.70; capex 2,200,000 / 8 / (5 x 8760) = 6.28
        ("H800", {}, 11.70, 6.28),
        # 13.0 x (312/989)^0.7 = 13.0 x 0.4459 = 5.797, x 0.9 = 5.22; 1.3M / 8 / 43,800 = 3.71
        ("A800", {}, 5.22, 3.71),
        # 13.0 x (148/989)^0.7 = 13.0 x 0.2646 = 3.440, x 0.9 = 3.10; 1.1M / 8 / 43,800 = 3.14
        ("H20", {}, 3.10, 3.14),
        # speed exponent 1: 13.0 x 320/989 x 0.9 = 3.79; 1.4M / 8 / 43,800 = 4.00
        ("Ascend 910B", {"speed_exponent": 1.0}, 3.79, 4.00),
        # rent 0.01 is below power: 0.700 kW x PUE 1.07 x 0.40 yuan/kWh = 0.2996 -> 0.30
        ("H800", {"reference_rent_cny_per_gpu_hour": 0.01}, 0.30, 6.28),
        # 10-year amortization: 2,200,000 / 8 / (10 x 8760) = 3.14
        ("H800", {"amortization_years": 10}, 11.70, 3.14),
    ],
)
def test_pricing_rule(
    catalog: Catalog, gpu: str, pricing: dict[str, float], reserve: float, capex: float
) -> None:
    params = parse_fleet_params(one_site_params(gpu, **pricing))
    fleet = generate_fleet(params, catalog, np.random.default_rng(0))
    (pool,) = fleet.pools.values()
    assert pool.id == f"qy-01/{pool.gpu.lower().replace(' ', '-')}"
    assert pool.gpu == accelerator(catalog, gpu).name
    assert pool.reserve_cny_per_gpu_hour == pytest.approx(reserve, abs=1e-9)
    assert pool.capex_cny_per_gpu_hour == pytest.approx(capex, abs=1e-9)
    assert fleet.sites[pool.site_id].pue == 1.07


def test_every_parameter_says_where_it_comes_from() -> None:
    raw = raw_params()
    for section in ("pricing", "sites"):
        for key, item in raw[section].items():
            assert "value" in item and ("source" in item or "note" in item), (section, key)
    assert "note" in raw["default_seed"] or "source" in raw["default_seed"]
    for table in ("gpus", "profiles", "locations"):
        for entry in raw[table]:
            assert "source" in entry or "note" in entry, (table, entry)


def test_unknown_cluster_or_gpu_in_params_is_an_unknown_name(catalog: Catalog) -> None:
    raw = one_site_params("H800")
    raw["locations"][0]["cluster"] = "qingyong"
    with pytest.raises(UnknownName, match="qingyang"):
        generate_fleet(parse_fleet_params(raw), catalog, np.random.default_rng(0))
    raw = one_site_params("H800")
    raw["gpus"][0]["name"] = "H8000"
    raw["profiles"][0]["gpu_weights"] = {"H8000": 1}
    with pytest.raises(UnknownName):
        generate_fleet(parse_fleet_params(raw), catalog, np.random.default_rng(0))


def test_two_gpu_entries_for_one_card_are_refused(catalog: Catalog) -> None:
    raw = one_site_params("H800")
    alias = copy.deepcopy(raw["gpus"][0]) | {"name": "H800 SXM"}  # catalogue alias of H800
    raw["gpus"].append(alias)
    raw["profiles"][0] |= {"pools": [2, 2], "gpu_weights": {"H800": 1, "H800 SXM": 1}}
    with pytest.raises(DataError, match="qy-01/h800"):
        generate_fleet(parse_fleet_params(raw), catalog, np.random.default_rng(0))


def broken(path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    raw = raw_params()
    target: Any = raw
    for key in path[:-1]:
        target = target[key]
    if value is None:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return raw


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (broken(("pricing", "noise_sigma"), None), "noise_sigma"),
        (broken(("locations", 0, "profile"), "nowhere"), "unknown profile"),
        (broken(("profiles", 0, "pools"), [3, 60]), "pools 3..60"),
        (broken(("profiles", 0, "gpu_weights"), {"B200": 1}), "B200"),
        (broken(("gpus", 0, "fabric"), "carrier-pigeon"), "carrier-pigeon"),
        (broken(("locations", 0, "lat"), 35.0), "cluster or city"),
        (broken(("locations", 1, "id"), "qingyang"), "duplicate location"),
    ],
)
def test_inconsistent_params_are_a_data_error(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(DataError, match=message):
        parse_fleet_params(raw)
