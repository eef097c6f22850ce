"""Calibration parameters of a synthetic fleet, parsed from ``data/fleet_<name>.toml``.

Pure: ``parse_fleet_params`` takes the parsed TOML document (a mapping) and returns frozen
values, or raises ``DataError`` saying what is missing or inconsistent. Scalars may be
written bare or as ``{ value = ..., source|note = "..." }`` so each carries its source.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from suanli.domain import Fabric, Region
from suanli.errors import DataError

__all__ = ["FleetParams", "GpuParams", "LocationParams", "ProfileParams", "parse_fleet_params"]


@dataclass(frozen=True, slots=True)
class GpuParams:
    """A card of the fleet: node size, default fabric, pool size range and server price."""

    name: str
    gpus_per_node: int
    fabric: Fabric
    nodes_min: int
    nodes_max: int
    server_price_cny: float


@dataclass(frozen=True, slots=True)
class ProfileParams:
    """A kind of site: how many GPU models, which ones, pool size scale, WAN, operators."""

    id: str
    pools_min: int
    pools_max: int
    node_scale: float
    wan_gbps: tuple[float, ...]
    operators: Mapping[str, float]
    gpu_weights: Mapping[str, float]


@dataclass(frozen=True, slots=True)
class LocationParams:
    """Where ``sites`` sites are: a catalogue cluster, or a city given by coordinates."""

    id: str
    profile: str
    sites: int
    jitter_km: float
    cluster: str | None
    city: str | None
    province: str | None
    lat: float | None
    lon: float | None


@dataclass(frozen=True, slots=True)
class FleetParams:
    """Calibration parameters of one synthetic fleet (see ``data/fleet_*.toml``)."""

    name: str
    description: str
    default_seed: int
    reference_gpu: str
    reference_rent_cny_per_gpu_hour: float
    speed_exponent: float
    noise_sigma: float
    region_factor: Mapping[Region, float]
    amortization_years: float
    pue_spread: float
    small_pool_max_nodes: int
    gpus: Mapping[str, GpuParams]
    profiles: Mapping[str, ProfileParams]
    locations: tuple[LocationParams, ...]


def _value(section: Mapping[str, Any], key: str) -> Any:
    """A scalar written either bare or as ``{ value = ..., source|note = ... }``."""
    if key not in section:
        raise DataError(f"fleet parameters: missing {key!r}")
    item = section[key]
    return item["value"] if isinstance(item, Mapping) and "value" in item else item


def _require(ok: bool, what: str) -> None:
    if not ok:
        raise DataError(f"fleet parameters: {what}")


def _parse_gpu(raw: Mapping[str, Any]) -> GpuParams:
    lo, hi = raw["nodes"]
    _require(1 <= lo <= hi, f"gpu {raw['name']!r}: nodes must be 1 <= min <= max")
    _require(raw["gpus_per_node"] >= 1 and raw["server_price_cny"] > 0, f"gpu {raw['name']!r}")
    return GpuParams(
        name=str(raw["name"]),
        gpus_per_node=int(raw["gpus_per_node"]),
        fabric=Fabric(raw["fabric"]),
        nodes_min=int(lo),
        nodes_max=int(hi),
        server_price_cny=float(raw["server_price_cny"]),
    )


def _parse_profile(raw: Mapping[str, Any], gpus: Mapping[str, GpuParams]) -> ProfileParams:
    lo, hi = raw["pools"]
    weights = {str(k): float(v) for k, v in raw["gpu_weights"].items()}
    operators = {str(k): float(v) for k, v in raw["operators"].items()}
    unknown = sorted(set(weights) - set(gpus))
    _require(not unknown, f"profile {raw['id']!r}: GPUs not in [[gpus]]: {unknown}")
    _require(
        all(w > 0 for w in [*weights.values(), *operators.values()]),
        f"profile {raw['id']!r}: weights must be positive",
    )
    _require(
        1 <= lo <= hi <= len(weights),
        f"profile {raw['id']!r}: pools {lo}..{hi} needs that many GPU models",
    )
    _require(raw["node_scale"] > 0 and len(raw["wan_gbps"]) > 0, f"profile {raw['id']!r}")
    return ProfileParams(
        id=str(raw["id"]),
        pools_min=int(lo),
        pools_max=int(hi),
        node_scale=float(raw["node_scale"]),
        wan_gbps=tuple(float(w) for w in raw["wan_gbps"]),
        operators=operators,
        gpu_weights=weights,
    )


def _parse_location(raw: Mapping[str, Any], default_jitter_km: float) -> LocationParams:
    # a cluster brings its own coordinates and province; a city must bring all of them
    by_cluster = "cluster" in raw and not any(k in raw for k in ("province", "lat", "lon"))
    by_city = "cluster" not in raw and all(k in raw for k in ("city", "province", "lat", "lon"))
    _require(
        by_cluster or by_city,
        f"location {raw.get('id')!r}: give a cluster or city+province+lat+lon, not both",
    )
    _require(raw["sites"] >= 1, f"location {raw['id']!r}: sites must be >= 1")
    return LocationParams(
        id=str(raw["id"]),
        profile=str(raw["profile"]),
        sites=int(raw["sites"]),
        jitter_km=float(raw.get("jitter_km", default_jitter_km)),
        cluster=raw.get("cluster"),
        city=raw.get("city"),
        province=raw.get("province"),
        lat=float(raw["lat"]) if "lat" in raw else None,
        lon=float(raw["lon"]) if "lon" in raw else None,
    )


def parse_fleet_params(raw: Mapping[str, Any]) -> FleetParams:
    """Fleet parameters from a parsed TOML document; ``DataError`` if inconsistent."""
    try:
        pricing, sites = raw["pricing"], raw["sites"]
        gpus = {g.name: g for g in map(_parse_gpu, raw["gpus"])}
        profiles = {p.id: p for p in (_parse_profile(p, gpus) for p in raw["profiles"])}
        jitter = float(_value(sites, "default_jitter_km"))
        locations = tuple(_parse_location(loc, jitter) for loc in raw["locations"])
        region_factor = {Region(k): float(v) for k, v in _value(pricing, "region_factor").items()}
        params = FleetParams(
            name=str(raw["name"]),
            description=str(raw.get("description", "")),
            default_seed=int(_value(raw, "default_seed")),
            reference_gpu=str(_value(pricing, "reference_gpu")),
            reference_rent_cny_per_gpu_hour=float(
                _value(pricing, "reference_rent_cny_per_gpu_hour")
            ),
            speed_exponent=float(_value(pricing, "speed_exponent")),
            noise_sigma=float(_value(pricing, "noise_sigma")),
            region_factor=region_factor,
            amortization_years=float(_value(pricing, "amortization_years")),
            pue_spread=float(_value(sites, "pue_spread")),
            small_pool_max_nodes=int(_value(sites, "small_pool_max_nodes")),
            gpus=gpus,
            profiles=profiles,
            locations=locations,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"fleet parameters: {type(exc).__name__}: {exc}") from exc
    for loc in params.locations:
        _require(loc.profile in params.profiles, f"location {loc.id!r}: unknown profile")
    _require(len({loc.id for loc in locations}) == len(locations), "duplicate location ids")
    _require(set(region_factor) == set(Region), "region_factor needs every region")
    _require(params.noise_sigma >= 0 and params.pue_spread >= 0, "negative spread")
    _require(params.amortization_years > 0, "amortization_years must be positive")
    return params
