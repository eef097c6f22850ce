"""What a clearing round decides: placements, routes, prices, payments and reasons.

Payments are integer fen and balance by construction for every placement::

    buyer_fen + voucher_fen == seller_fen + fee_fen
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from suanli.domain import PoolId

__all__ = [
    "Decision",
    "JobPlacement",
    "Payment",
    "PoolPrice",
    "Reason",
    "ReasonCode",
    "ReplicaPlacement",
    "Route",
    "ServiceOutcome",
    "Unplaced",
]


class ReasonCode(StrEnum):
    """Why a pool was rejected or a piece of work left unplaced (machine-readable)."""

    UNKNOWN_GPU = "unknown-gpu"
    MODEL_NOT_ALLOWED = "gpu-not-allowed"
    MEMORY = "memory"
    GANG = "gang"
    FABRIC = "fabric"
    DEADLINE = "deadline"
    LATENCY = "latency"
    TPOT = "tpot"
    PRICE = "price"
    CAPACITY = "capacity"
    LOCALITY = "locality"
    PRIVATE = "private"
    NO_POOLS = "no-pools"


@dataclass(frozen=True, slots=True)
class Reason:
    """One reason, with a message a person can read and the numbers behind it."""

    code: ReasonCode
    message: str
    pool_id: str | None = None
    pools: int = 0

    def __str__(self) -> str:
        return f"{self.code.value}: {self.message}"


@dataclass(frozen=True, slots=True)
class Payment:
    """Money for one placement in fen: buyer + voucher = seller + fee."""

    buyer_fen: int
    voucher_fen: int
    seller_fen: int
    fee_fen: int
    voucher_id: str | None = None

    @property
    def total_fen(self) -> int:
        return self.seller_fen + self.fee_fen


@dataclass(frozen=True, slots=True)
class JobPlacement:
    job_id: str
    buyer: str
    pool_id: PoolId
    gpus: int
    nodes: tuple[int, ...]
    duration_h: float
    price_cny_per_gpu_hour: float
    payment: Payment
    surplus_cny_per_hour: float
    why: str


@dataclass(frozen=True, slots=True)
class ReplicaPlacement:
    """Replicas of a service on a pool. ``required`` of them are there only because the
    owner asked for ``min_replicas``: they are billed at the pool's price whatever their
    requests are worth."""

    service_id: str
    pool_id: PoolId
    replicas: int
    gpus_per_replica: int
    capacity_rps_per_replica: float
    required: int = 0


@dataclass(frozen=True, slots=True)
class Route:
    """Demand of one city sent to one pool's replicas."""

    service_id: str
    city: str
    pool_id: PoolId
    rps: float
    rtt_ms: float
    ttft_ms: float


@dataclass(frozen=True, slots=True)
class ServiceOutcome:
    service_id: str
    buyer: str
    replicas: tuple[ReplicaPlacement, ...]
    routes: tuple[Route, ...]
    demand_rps: float
    served_rps: float
    payment: Payment
    unserved: Mapping[str, tuple[Reason, ...]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Unplaced:
    item_id: str
    kind: str
    reasons: tuple[Reason, ...]


@dataclass(frozen=True, slots=True)
class PoolPrice:
    pool_id: PoolId
    price_cny_per_gpu_hour: float
    reserve_cny_per_gpu_hour: float
    scarcity_rent_cny_per_gpu_hour: float
    gpus_sold: int
    free_gpus_after: int


@dataclass(frozen=True, slots=True)
class Decision:
    """A round's outcome. ``welfare_cny_per_hour`` is the objective the policy reached."""

    policy: str
    jobs: tuple[JobPlacement, ...]
    services: tuple[ServiceOutcome, ...]
    unplaced: tuple[Unplaced, ...]
    prices: tuple[PoolPrice, ...]
    welfare_cny_per_hour: float
    voucher_draws_fen: Mapping[str, int] = field(default_factory=dict)
    upper_bound_cny_per_hour: float | None = None
    notes: tuple[str, ...] = ()

    @property
    def gpus_placed(self) -> int:
        return sum(p.gpus for p in self.jobs) + sum(
            r.replicas * r.gpus_per_replica for s in self.services for r in s.replicas
        )
