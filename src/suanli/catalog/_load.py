"""Read and validate the shipped catalogue CSV files — the only I/O in ``suanli.catalog``.

``load_catalog()`` reads ``catalog/data/*.csv`` from the installed package (cached: the
files never change while the process runs). ``build_catalog(texts)`` is the pure part:
it parses file contents and checks them, raising :class:`~suanli.errors.DataError` with
``file:line`` for the first bad row, so a broken data file is found at load time and
never as a wrong number later.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping
from importlib import resources
from types import MappingProxyType
from typing import TypeVar

from suanli.catalog._csv import CHINA_LAT, CHINA_LON, Row, read_rows
from suanli.catalog._types import Catalog, normalize_name
from suanli.domain.catalog import (
    Accelerator,
    City,
    Cluster,
    Hub,
    LLMModel,
    PowerPrice,
    Region,
    Vendor,
)

__all__ = ["CHINA_LAT", "CHINA_LON", "FILES", "build_catalog", "load_catalog"]

# File name -> its exact header. A changed header is a DataError, not a silent misread.
FILES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "accelerators.csv": (
            "name", "aliases", "vendor", "bf16_tflops", "fp8_tflops", "mem_gb", "mem_bw_tbps",
            "interconnect_gbps", "tdp_w", "domestic", "source", "estimate",
        ),
        "models.csv": (
            "name", "aliases", "total_params_b", "active_params_b", "layers", "hidden", "heads",
            "kv_heads", "head_dim", "kv_elems_per_token_per_layer", "weight_bytes_per_param",
            "kv_bytes_per_elem", "source", "estimate",
        ),
        "hubs.csv": (
            "id", "aliases", "name", "name_zh", "region", "provinces", "lat", "lon",
            "pue_target", "source",
        ),
        "clusters.csv": (
            "id", "aliases", "name", "name_zh", "hub_id", "province", "lat", "lon", "pue",
            "source", "estimate",
        ),
        "cities.csv": (
            "name", "name_zh", "province", "region", "lat", "lon", "demand_weight",
            "weight_source",
        ),
        "power_prices.csv": (
            "province", "aliases", "region", "price_cny_per_kwh", "pue", "source", "estimate",
        ),
    }
)  # fmt: skip

T = TypeVar("T")


@functools.cache
def load_catalog() -> Catalog:
    """The built-in catalogue, read once per process from the package data."""
    data = resources.files("suanli.catalog").joinpath("data")
    texts = {name: data.joinpath(name).read_text(encoding="utf-8") for name in FILES}
    return build_catalog(texts)


def build_catalog(texts: Mapping[str, str]) -> Catalog:
    """Parse and cross-check the catalogue files given as ``{file name: content}``.

    Raises DataError naming the file and line of the first inconsistency: a malformed or
    missing value, a duplicate key, an alias naming two rows, a cluster in an unknown hub,
    or a province (of a hub, cluster or city) without a power price.
    """
    names: dict[str, dict[str, str]] = {}
    accelerators = _table(texts, "accelerators.csv", _accelerator, "accelerator", names)
    models = _table(texts, "models.csv", _model, "model", names)
    power = _table(texts, "power_prices.csv", _power, "province", names)
    hubs = _table(texts, "hubs.csv", _hub, "hub", names)
    clusters = _table(texts, "clusters.csv", _cluster, "cluster", names)
    cities = _table(texts, "cities.csv", _city, "city", names)

    for row in _rows(texts, "hubs.csv"):
        for province in row.names("provinces"):
            _require_power(row, province, power)
    for row in _rows(texts, "clusters.csv"):
        hub = hubs.get(row.text("hub_id"))
        if hub is None:
            row.fail(f"hub_id {row.text('hub_id')!r} is not in hubs.csv")
        if row.text("province") not in hub.provinces:
            row.fail(f"province {row.text('province')!r} is not one of hub {hub.id!r}'s")
        _require_power(row, row.text("province"), power)
    for row in _rows(texts, "cities.csv"):
        _require_power(row, row.text("province"), power)

    return Catalog(
        accelerators=accelerators,
        models=models,
        hubs=hubs,
        clusters=clusters,
        cities=cities,
        power=power,
        names=MappingProxyType({k: MappingProxyType(v) for k, v in names.items()}),
    )


def _rows(texts: Mapping[str, str], file: str) -> Iterator[Row]:
    return read_rows(texts, file, FILES[file])


def _table(
    texts: Mapping[str, str],
    file: str,
    parse: Callable[[Row], tuple[str, T, tuple[str, ...]]],
    kind: str,
    names: dict[str, dict[str, str]],
) -> Mapping[str, T]:
    """Parse every row of ``file``; index its key and aliases under ``names[kind]``."""
    table: dict[str, T] = {}
    index = names.setdefault(kind, {})
    for row in _rows(texts, file):
        key, value, aliases = parse(row)
        if key in table:
            row.fail(f"duplicate {kind} {key!r}")
        for alias in (key, *aliases):
            norm = normalize_name(alias)
            if index.get(norm, key) != key:
                row.fail(f"{kind} name {alias!r} already names {index[norm]!r}")
            index[norm] = key
        table[key] = value
    return MappingProxyType(table)


def _require_power(row: Row, province: str, power: Mapping[str, PowerPrice]) -> None:
    if province not in power:
        row.fail(f"province {province!r} has no row in power_prices.csv")


def _accelerator(row: Row) -> tuple[str, Accelerator, tuple[str, ...]]:
    vendor = row.choice("vendor", Vendor)
    domestic = row.flag("domestic")
    if domestic != (vendor is not Vendor.NVIDIA):
        row.fail(f"domestic={domestic} contradicts vendor {vendor.value!r}")
    acc = Accelerator(
        name=row.text("name"),
        vendor=vendor,
        bf16_tflops=row.number("bf16_tflops"),
        fp8_tflops=row.optional_number("fp8_tflops"),
        mem_gb=row.number("mem_gb"),
        mem_bw_tbps=row.number("mem_bw_tbps"),
        interconnect_gbps=row.number("interconnect_gbps"),
        tdp_w=row.number("tdp_w"),
        domestic=domestic,
        source=row.text("source"),
        estimate=row.flag("estimate"),
    )
    return acc.name, acc, row.names("aliases")


def _model(row: Row) -> tuple[str, LLMModel, tuple[str, ...]]:
    m = LLMModel(
        name=row.text("name"),
        total_params_b=row.number("total_params_b"),
        active_params_b=row.number("active_params_b"),
        layers=row.integer("layers"),
        hidden=row.integer("hidden"),
        heads=row.integer("heads"),
        kv_heads=row.integer("kv_heads"),
        head_dim=row.integer("head_dim"),
        kv_elems_per_token_per_layer=row.integer("kv_elems_per_token_per_layer"),
        weight_bytes_per_param=row.number("weight_bytes_per_param"),
        kv_bytes_per_elem=row.number("kv_bytes_per_elem"),
        source=row.text("source"),
        estimate=row.flag("estimate"),
    )
    if m.active_params_b > m.total_params_b:
        row.fail("active_params_b exceeds total_params_b")
    if m.heads % m.kv_heads:
        row.fail(f"heads {m.heads} is not a multiple of kv_heads {m.kv_heads}")
    return m.name, m, row.names("aliases")


def _hub(row: Row) -> tuple[str, Hub, tuple[str, ...]]:
    lat, lon = row.coordinates()
    provinces = row.names("provinces")
    if not provinces:
        row.fail("column 'provinces' is empty")
    h = Hub(
        id=row.text("id"),
        name=row.text("name"),
        name_zh=row.text("name_zh"),
        region=row.choice("region", Region),
        provinces=provinces,
        lat=lat,
        lon=lon,
        pue_target=row.number("pue_target"),
        source=row.text("source"),
    )
    return h.id, h, (h.name, h.name_zh, *row.names("aliases"))


def _cluster(row: Row) -> tuple[str, Cluster, tuple[str, ...]]:
    lat, lon = row.coordinates()
    c = Cluster(
        id=row.text("id"),
        name=row.text("name"),
        name_zh=row.text("name_zh"),
        hub_id=row.text("hub_id"),
        province=row.text("province"),
        lat=lat,
        lon=lon,
        pue=row.number("pue"),
        source=row.text("source"),
        estimate=row.flag("estimate"),
    )
    return c.id, c, (c.name, c.name_zh, *row.names("aliases"))


def _city(row: Row) -> tuple[str, City, tuple[str, ...]]:
    lat, lon = row.coordinates()
    c = City(
        name=row.text("name"),
        name_zh=row.text("name_zh"),
        province=row.text("province"),
        region=row.choice("region", Region),
        lat=lat,
        lon=lon,
        demand_weight=row.number("demand_weight"),
        weight_source=row.text("weight_source"),
    )
    return c.name, c, (c.name_zh,)


def _power(row: Row) -> tuple[str, PowerPrice, tuple[str, ...]]:
    p = PowerPrice(
        province=row.text("province"),
        region=row.choice("region", Region),
        price_cny_per_kwh=row.number("price_cny_per_kwh"),
        pue=row.number("pue"),
        source=row.text("source"),
        estimate=row.flag("estimate"),
    )
    if p.pue < 1.0:
        row.fail(f"pue {p.pue} is below 1")
    return p.province, p, row.names("aliases")
