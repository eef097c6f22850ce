"""Catalogue values: accelerators, LLM model shapes, hubs, clusters, cities, power prices.

Every value carries ``source`` (where the figures come from) and ``estimate`` (True when
any figure in the row is an estimate rather than a published number).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Vendor(StrEnum):
    NVIDIA = "nvidia"
    HUAWEI = "huawei"
    CAMBRICON = "cambricon"


class Region(StrEnum):
    """Coarse geography used by policies and reports (东数西算: east data, west compute)."""

    EAST = "east"
    CENTRAL = "central"
    WEST = "west"


class Fabric(StrEnum):
    """Inter-node network of a pool. Multi-node gangs need a high-bandwidth fabric."""

    INFINIBAND = "infiniband"
    ROCE = "roce"
    ETHERNET = "ethernet"

    @property
    def high_bandwidth(self) -> bool:
        return self in (Fabric.INFINIBAND, Fabric.ROCE)


@dataclass(frozen=True, slots=True)
class Accelerator:
    """One accelerator model (per card).

    ``bf16_tflops`` is dense (no sparsity). ``fp8_tflops`` is None where the chip has no FP8.
    ``interconnect_gbps`` is the per-card scale-up bandwidth (NVLink/HCCS/PCIe) in GB/s.
    """

    name: str
    vendor: Vendor
    bf16_tflops: float
    fp8_tflops: float | None
    mem_gb: float
    mem_bw_tbps: float
    interconnect_gbps: float
    tdp_w: float
    domestic: bool
    source: str
    estimate: bool


@dataclass(frozen=True, slots=True)
class LLMModel:
    """Shape of an LLM, enough for the roofline performance model.

    ``kv_elems_per_token_per_layer`` is 2 · kv_heads · head_dim for standard attention;
    for MLA (DeepSeek-V3/R1) it is the cached latent + rope key (512 + 64 = 576).
    """

    name: str
    total_params_b: float
    active_params_b: float
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    kv_elems_per_token_per_layer: int
    weight_bytes_per_param: float
    kv_bytes_per_elem: float
    source: str
    estimate: bool

    @property
    def is_moe(self) -> bool:
        return self.active_params_b < self.total_params_b


@dataclass(frozen=True, slots=True)
class Hub:
    """One of the 8 national computing hubs (枢纽节点) of East-Data-West-Computing."""

    id: str
    name: str
    name_zh: str
    region: Region
    provinces: tuple[str, ...]
    lat: float
    lon: float
    pue_target: float
    source: str


@dataclass(frozen=True, slots=True)
class Cluster:
    """One of the 10 national data-center clusters (数据中心集群), inside a hub."""

    id: str
    name: str
    name_zh: str
    hub_id: str
    province: str
    lat: float
    lon: float
    pue: float
    source: str
    estimate: bool


@dataclass(frozen=True, slots=True)
class City:
    """A demand city: where users (and so inference requests) are."""

    name: str
    name_zh: str
    province: str
    region: Region
    lat: float
    lon: float
    demand_weight: float
    weight_source: str


@dataclass(frozen=True, slots=True)
class PowerPrice:
    """Industrial power price and typical data-center PUE for a province."""

    province: str
    region: Region
    price_cny_per_kwh: float
    pue: float
    source: str
    estimate: bool
