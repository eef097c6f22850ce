"""The market snapshot: everything one clearing round decides on, as immutable values.

Money here is in yuan (CNY) as floats; the decision converts payments to integer fen.
Times are hours on the caller's clock (``now_h``); the engine never reads a clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NewType

from suanli.domain import Fabric, PoolId, Site, SiteId

__all__ = [
    "BatchJob",
    "BuyerId",
    "InferenceService",
    "JobId",
    "MarketRules",
    "MarketSnapshot",
    "PoolState",
    "RunningWork",
    "ServiceId",
    "VoucherProgram",
]

JobId = NewType("JobId", str)
ServiceId = NewType("ServiceId", str)
BuyerId = NewType("BuyerId", str)


@dataclass(frozen=True, slots=True)
class PoolState:
    """A pool as the market sees it this round.

    ``free_gpus`` excludes running work. ``free_nodes`` lists free GPUs per node that has
    any (node topology for gangs); None means the free GPUs sit on whole free nodes.
    ``speed`` is the pool's throughput in reference GPUs (H100 = 1.0) per GPU.
    """

    id: PoolId
    site_id: SiteId
    gpu: str
    free_gpus: int
    gpus_per_node: int
    fabric: Fabric
    reserve_cny_per_gpu_hour: float
    speed: float
    free_nodes: tuple[int, ...] | None = None
    total_gpus: int | None = None

    @property
    def size_gpus(self) -> int:
        """All GPUs of the pool, free or busy (for the gang filter)."""
        return self.total_gpus if self.total_gpus is not None else self.free_gpus

    def node_free_counts(self) -> list[int]:
        """Free GPUs per node with any free GPU."""
        if self.free_nodes is not None:
            return [n for n in self.free_nodes if n > 0]
        whole, rest = divmod(self.free_gpus, self.gpus_per_node)
        return [self.gpus_per_node] * whole + ([rest] if rest else [])


@dataclass(frozen=True, slots=True)
class BatchJob:
    """A gang batch job: all ``gpus`` in one pool, or nothing.

    ``work_ref_gpu_hours`` is the work in reference (H100) GPU-hours; the bid is per
    reference GPU-hour. ``deadline_h`` counts from the snapshot's ``now_h`` (None: none).
    Data of ``data_gb`` must first move from ``origin_city`` over the site's WAN.
    """

    id: JobId
    buyer: BuyerId
    gpus: int
    work_ref_gpu_hours: float
    bid_cny_per_ref_gpu_hour: float
    origin_city: str
    deadline_h: float | None = None
    data_gb: float = 0.0
    min_mem_gb: float = 0.0
    allowed_gpus: frozenset[str] | None = None
    interruptible: bool = False
    submitted_at_h: float = 0.0


@dataclass(frozen=True, slots=True)
class InferenceService:
    """An LLM inference service: demand per city under TTFT/TPOT SLOs.

    ``demand_rps`` maps a demand city to requests per second. The bids follow the shape
    of public API price lists (yuan per million tokens): input tokens that miss the
    prefix cache, cached input tokens (``cached_fraction`` of the prompt hits the cache)
    and output tokens, all served within the SLO; see :mod:`suanli.market.valuation`.
    ``min_replicas``/``max_replicas`` bound the replicas the clearing plans.
    """

    id: ServiceId
    buyer: BuyerId
    model: str
    demand_rps: Mapping[str, float]
    prompt_tokens: float
    output_tokens: float
    ttft_ms: float
    tpot_ms: float
    bid_cny_per_m_output_tokens: float
    allowed_gpus: frozenset[str] | None = None
    submitted_at_h: float = 0.0
    bid_cny_per_m_input_tokens: float = 0.0
    bid_cny_per_m_cached_input_tokens: float = 0.0
    cached_fraction: float = 0.0
    min_replicas: int = 0
    max_replicas: int | None = None


@dataclass(frozen=True, slots=True)
class VoucherProgram:
    """A compute-voucher program (算力券): pays ``coverage`` of eligible spend.

    Eligibility: None in a field means "any". ``spent_cny`` and ``spent_by_buyer_cny`` are
    what earlier rounds drew; the engine never lets a round exceed ``budget_cny`` or
    ``per_buyer_cap_cny``.
    """

    id: str
    name: str
    coverage: float
    budget_cny: float
    per_buyer_cap_cny: float | None = None
    spent_cny: float = 0.0
    spent_by_buyer_cny: Mapping[str, float] = field(default_factory=dict)
    eligible_sites: frozenset[str] | None = None
    eligible_hubs: frozenset[str] | None = None
    eligible_provinces: frozenset[str] | None = None
    eligible_buyers: frozenset[str] | None = None
    domestic_gpus_only: bool = False
    valid_from_h: float = float("-inf")
    valid_until_h: float = float("inf")


@dataclass(frozen=True, slots=True)
class RunningWork:
    """Work placed in an earlier round that still holds GPUs (already out of ``free_gpus``)."""

    item_id: str
    pool_id: PoolId
    gpus: int
    price_cny_per_gpu_hour: float
    preemptible: bool = False


@dataclass(frozen=True, slots=True)
class MarketRules:
    """Rules a network operator sets.

    ``fee_rate``: the platform's fee on top of the seller's price. ``service_horizon_h``:
    the billing period of services in one round. ``candidate_pools`` bounds the pools kept
    per job after filtering (the best by surplus).
    """

    fee_rate: float = 0.02
    service_horizon_h: float = 0.25
    candidate_pools: int = 30


@dataclass(frozen=True, slots=True)
class MarketSnapshot:
    """One clearing round's immutable input."""

    now_h: float
    sites: Mapping[SiteId, Site]
    pools: tuple[PoolState, ...]
    jobs: tuple[BatchJob, ...] = ()
    services: tuple[InferenceService, ...] = ()
    vouchers: tuple[VoucherProgram, ...] = ()
    running: tuple[RunningWork, ...] = ()
    rules: MarketRules = field(default_factory=MarketRules)
