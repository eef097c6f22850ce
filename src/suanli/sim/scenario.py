"""Scenario files: a fleet, demand, sellers, vouchers and outages, validated with pydantic.

A scenario is a TOML or YAML file (JSON works too). ``extends = "china-2025"`` starts from
another scenario (a built-in name, or a path relative to this file) and overrides it key by
key: tables merge, lists and scalars replace — except ``add_sites`` / ``add_pools``, which
add to the parent's. Built-in scenarios ship in
``suanli/sim/scenarios/*.toml``; :func:`load_scenario` accepts a built-in name or a path.

Every field has a unit in its name; every default is a documented assumption. A wrong file
raises :class:`~suanli.errors.InvalidInput` listing each bad field and why.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from suanli.domain import Fabric
from suanli.errors import InvalidInput, UnknownName
from suanli.market.demand_estimate import EstimatorParams
from suanli.specs._parse import load_document, parse_model

__all__ = [
    "BatchSpec",
    "DiurnalSpec",
    "EstimatorSpec",
    "FleetSpec",
    "InferenceSpec",
    "MarketSpec",
    "MixPoint",
    "OutageSpec",
    "PoolAddition",
    "RandomOutagesSpec",
    "Scenario",
    "SellerSpec",
    "ServiceSpec",
    "SiteAddition",
    "VoucherSpec",
    "builtin_scenarios",
    "load_scenario",
    "parse_scenario",
]

_STRICT = ConfigDict(extra="forbid", frozen=True)


class SiteAddition(BaseModel):
    """A new site: at a national cluster (coordinates, province, PUE from the catalogue) or
    at explicit coordinates in a province."""

    model_config = _STRICT
    id: str = Field(min_length=1)
    name: str | None = None
    cluster: str | None = None
    province: str | None = None
    city: str | None = None
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    pue: float | None = Field(default=None, ge=1.0, le=3.0)
    power_price_cny_per_kwh: float | None = Field(default=None, ge=0)
    wan_gbps: float = Field(default=100.0, gt=0)
    operator: str = "planned"

    @model_validator(mode="after")
    def _where(self) -> SiteAddition:
        explicit = self.province is not None and self.lat is not None and self.lon is not None
        if (self.cluster is not None) != explicit:
            return self
        raise ValueError("give either `cluster`, or `province` with `lat` and `lon`")


class PoolAddition(BaseModel):
    """GPUs added at a site (new or existing). Reserve and capex default to the median of
    the fleet's pools of the same GPU (reserve never below the site's power cost)."""

    model_config = _STRICT
    site: str = Field(min_length=1)
    gpu: str
    gpus: int = Field(gt=0, le=1_000_000)
    gpus_per_node: int = Field(default=8, gt=0, le=64)
    fabric: Fabric = Fabric.ROCE
    reserve_cny_per_gpu_hour: float | None = Field(default=None, ge=0)
    capex_cny_per_gpu_hour: float | None = Field(default=None, ge=0)


class FleetSpec(BaseModel):
    """The built-in fleet ``name``, or a fleet-parameters TOML (``params_file``, the format
    of ``suanli/catalog/data/fleet_china_2025.toml``), drawn with ``seed``; ``name = "none"``
    starts from no sites at all. ``add_sites`` / ``add_pools`` then extend it."""

    model_config = _STRICT
    name: str = "china-2025"
    params_file: str | None = None
    seed: int | None = None
    add_sites: list[SiteAddition] = []
    add_pools: list[PoolAddition] = []


class MarketSpec(BaseModel):
    model_config = _STRICT
    period_min: float = Field(default=15.0, gt=0, le=24 * 60)
    fee_rate: float = Field(default=0.02, ge=0, lt=1)
    candidate_pools: int = Field(default=30, gt=0)


class SellerSpec(BaseModel):
    """How sellers move their reserve between rounds (see ``sim.sellers``)."""

    model_config = _STRICT
    policy: Literal["adaptive", "fixed"] = "adaptive"
    idle_below: float = Field(default=0.3, ge=0, le=1)
    sold_out_above: float = Field(default=0.9, ge=0, le=1)
    down_per_hour: float = Field(default=0.02, ge=0, lt=1)
    up_per_hour: float = Field(default=0.02, ge=0, le=1)
    max_factor: float = Field(default=2.0, ge=1)


class BatchSpec(BaseModel):
    """Batch jobs: Poisson arrivals; GPUs and run time from the Alibaba fit."""

    model_config = _STRICT
    jobs_per_hour: float = Field(default=120.0, ge=0)
    bid_median_cny_per_ref_gpu_hour: float = Field(default=13.0, gt=0)
    bid_log_sigma: float = Field(default=0.35, ge=0)
    deadline_share: float = Field(default=0.3, ge=0, le=1)
    deadline_slack: tuple[float, float] = (1.5, 6.0)
    data_gb_max: float = Field(default=2000.0, ge=1)
    needs_80gb_share: float = Field(default=0.15, ge=0, le=1)
    nvidia_only_share: float = Field(default=0.10, ge=0, le=1)
    patience_h: float = Field(default=2.0, gt=0)
    checkpoint_every_h: float | None = Field(default=1.0, gt=0)
    buyers_per_city: int = Field(default=20, gt=0)
    max_run_h: float = Field(default=24.0 * 14, gt=0)


class DiurnalSpec(BaseModel):
    """Demand over the day: 1 + a·cos(2π(h − peak_hour)/24), a = (R − 1)/(R + 1) with R the
    peak-to-trough ratio; its daily mean is 1."""

    model_config = _STRICT
    peak_hour: float = Field(default=21.0, ge=0, lt=24)
    peak_to_trough: float = Field(default=3.0, ge=1)


class ServiceSpec(BaseModel):
    """An inference product: one service whose demand is spread over ``cities`` (a list,
    or the N largest demand cities) in proportion to their weight.

    Bids are yuan per million tokens, the shape of public API price lists: input on a
    cache miss, input on a cache hit (``cached_fraction`` of the prompt) and output; a
    file with only the output bid keeps its meaning (the others default to 0).
    ``min_replicas`` / ``max_replicas`` bound the replicas the clearing plans."""

    model_config = _STRICT
    id: str = Field(min_length=1)
    buyer: str | None = None
    model: str
    profile: str | None = "conversation"
    prompt_tokens: float | None = Field(default=None, gt=0)
    output_tokens: float | None = Field(default=None, gt=0)
    ttft_ms: float = Field(gt=0)
    tpot_ms: float = Field(gt=0)
    bid_cny_per_m_output_tokens: float = Field(ge=0)
    bid_cny_per_m_input_tokens: float = Field(default=0.0, ge=0)
    bid_cny_per_m_cached_input_tokens: float = Field(default=0.0, ge=0)
    cached_fraction: float = Field(default=0.0, ge=0, le=1)
    min_replicas: int = Field(default=0, ge=0)
    max_replicas: int | None = Field(default=None, ge=1)
    mean_rps: float = Field(ge=0)
    cities: list[str] | int = 12
    diurnal: DiurnalSpec | None = None

    @model_validator(mode="after")
    def _tokens(self) -> ServiceSpec:
        if self.profile is None and (self.prompt_tokens is None or self.output_tokens is None):
            raise ValueError("give a token `profile`, or both prompt_tokens and output_tokens")
        if isinstance(self.cities, int) and self.cities < 1:
            raise ValueError("cities must be ≥ 1 (or a list of city names)")
        if self.max_replicas is not None and self.max_replicas < self.min_replicas:
            raise ValueError(
                f"max_replicas ({self.max_replicas}) is below min_replicas ({self.min_replicas})"
            )
        return self


_LIVE = EstimatorParams()


class EstimatorSpec(BaseModel):
    """How each round's planned demand follows the measured arrivals (see
    ``suanli.market.demand_estimate``; the defaults are the live exchange's)."""

    model_config = _STRICT
    half_life_s: float = Field(default=_LIVE.half_life_s, gt=0)
    headroom: float = Field(default=_LIVE.headroom, ge=1)
    down_band: float = Field(default=_LIVE.down_band, gt=0, le=1)
    down_after_s: float = Field(default=_LIVE.down_after_s, ge=0)

    def params(self) -> EstimatorParams:
        return EstimatorParams(
            half_life_s=self.half_life_s,
            headroom=self.headroom,
            down_band=self.down_band,
            down_after_s=self.down_after_s,
        )


class InferenceSpec(BaseModel):
    model_config = _STRICT
    diurnal: DiurnalSpec = DiurnalSpec()
    estimator: EstimatorSpec = EstimatorSpec()
    services: list[ServiceSpec] = []


class MixPoint(BaseModel):
    """Demand multipliers at ``day``, linear in between, flat beyond the ends."""

    model_config = _STRICT
    day: float = Field(ge=0)
    batch: float = Field(default=1.0, ge=0)
    inference: float = Field(default=1.0, ge=0)


class VoucherSpec(BaseModel):
    """A city voucher program (算力券). Budgets are per year, prorated to the run."""

    model_config = _STRICT
    id: str = Field(min_length=1)
    name: str = ""
    coverage: float = Field(gt=0, lt=1)
    budget_cny_per_year: float = Field(ge=0)
    per_buyer_cap_cny_per_year: float | None = Field(default=None, ge=0)
    buyer_cities: list[str] | None = None
    eligible_provinces: list[str] | None = None
    eligible_hubs: list[str] | None = None
    eligible_sites: list[str] | None = None
    domestic_gpus_only: bool = False
    from_day: float = Field(default=0.0, ge=0)
    until_day: float | None = Field(default=None, gt=0)


class OutageSpec(BaseModel):
    """Sites that go dark for a while: a hub, a province, a cluster or listed sites."""

    model_config = _STRICT
    hub: str | None = None
    province: str | None = None
    cluster: str | None = None
    sites: list[str] | None = None
    start_h: float = Field(ge=0)
    duration_h: float = Field(gt=0)
    reason: str = ""

    @model_validator(mode="after")
    def _one_target(self) -> OutageSpec:
        given = [x for x in (self.hub, self.province, self.cluster, self.sites) if x is not None]
        if len(given) != 1:
            raise ValueError("name exactly one of hub, province, cluster or sites")
        return self


class RandomOutagesSpec(BaseModel):
    """Independent site failures: Poisson per site, exponential durations."""

    model_config = _STRICT
    per_site_per_day: float = Field(default=0.0, ge=0)
    mean_duration_h: float = Field(default=4.0, gt=0)


class Scenario(BaseModel):
    model_config = _STRICT
    name: str = Field(min_length=1)
    description: str = ""
    extends: str | None = None
    seed: int = 1
    days: float = Field(default=7.0, gt=0, le=366)
    start_hour: float = Field(default=0.0, ge=0, lt=24)
    fleet: FleetSpec = FleetSpec()
    market: MarketSpec = MarketSpec()
    sellers: SellerSpec = SellerSpec()
    batch: BatchSpec = BatchSpec()
    inference: InferenceSpec = InferenceSpec()
    mix: list[MixPoint] = []
    vouchers: list[VoucherSpec] = []
    outages: list[OutageSpec] = []
    random_outages: RandomOutagesSpec = RandomOutagesSpec()
    base_dir: str | None = None  # where relative paths resolve (set by the loader)

    @model_validator(mode="after")
    def _mix_sorted(self) -> Scenario:
        days = [p.day for p in self.mix]
        if days != sorted(days):
            raise ValueError("mix points must be in increasing `day` order")
        return self


def builtin_scenarios() -> list[str]:
    """Names of the scenarios shipped in ``suanli/sim/scenarios``, sorted."""
    root = resources.files("suanli.sim").joinpath("scenarios")
    return sorted(f.name.removesuffix(".toml") for f in root.iterdir() if f.name.endswith(".toml"))


def load_scenario(name_or_path: str) -> Scenario:
    """A built-in scenario by name, or a scenario file (TOML, YAML or JSON) by path."""
    raw, where, base = _raw(name_or_path, None, set())
    data = {**raw, "base_dir": str(base) if base is not None else None}
    return parse_scenario(data, where)


def parse_scenario(data: Mapping[str, Any], where: str) -> Scenario:
    """Validate an already-merged scenario document."""
    return parse_model(Scenario, data, where)


def _raw(
    name_or_path: str, relative_to: Path | None, seen: set[str]
) -> tuple[dict[str, Any], str, Path | None]:
    path = Path(name_or_path)
    if relative_to is not None and not path.is_absolute():
        path = relative_to / path
    if path.suffix.lower() in (".toml", ".yaml", ".yml", ".json") or path.exists():
        doc = _read_file(path)
        where, base = str(path), path.parent
    elif name_or_path in builtin_scenarios():
        text = (
            resources.files("suanli.sim")
            .joinpath("scenarios")
            .joinpath(f"{name_or_path}.toml")
            .read_text(encoding="utf-8")
        )
        doc = tomllib.loads(text)
        where, base = f"built-in scenario {name_or_path!r}", None
    else:
        raise UnknownName("scenario", name_or_path, builtin_scenarios())
    if not isinstance(doc, dict):
        raise InvalidInput(f"{where}: a scenario must be a table of keys, got {type(doc).__name__}")
    parent = doc.get("extends")
    if parent is None:
        return doc, where, base
    if not isinstance(parent, str):
        raise InvalidInput(f"{where}: extends must be a scenario name or path")
    if where in seen:
        raise InvalidInput(f"{where}: `extends` loops back to itself")
    parent_doc, _, _ = _raw(parent, base, seen | {where})
    merged = _merge(parent_doc, doc)
    merged["extends"] = parent
    return merged, where, base


def _read_file(path: Path) -> Any:
    if path.suffix.lower() != ".toml":
        return load_document(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInput(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{path}: cannot read ({exc})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(f"{path}: invalid TOML: {exc}") from None


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        elif key.startswith("add_") and isinstance(value, list) and isinstance(out.get(key), list):
            out[key] = [*out[key], *value]  # additions add up along the chain
        else:
            out[key] = value
    return out
