"""What the engine remembers about each piece of work and each GPU allocation."""

from __future__ import annotations

from dataclasses import dataclass, field

from suanli.engine.lifecycle import Transition, WorkState
from suanli.market.decision import Payment
from suanli.market.snapshot import BatchJob, InferenceService

__all__ = ["Allocation", "JobRecord", "ServiceRecord", "UsageRecord"]


@dataclass(frozen=True, slots=True)
class Allocation:
    """GPUs of one pool held by one job or one service replica."""

    id: str
    item_id: str
    kind: str  # "job" | "replica"
    pool_id: str
    gpus: int
    nodes: tuple[tuple[int, int], ...]  # (node index, GPUs)
    price_cny_per_gpu_hour: float
    started_at_h: float
    planned_h: float
    payment: Payment  # planned for ``planned_h``; captured in proportion to delivery


@dataclass
class JobRecord:
    """A batch job and its history. ``deadline_at_h`` is absolute on the engine clock."""

    job: BatchJob
    state: WorkState
    submitted_at_h: float
    deadline_at_h: float | None
    checkpoint_every_h: float | None
    done_ref_gpu_hours: float = 0.0
    allocation: Allocation | None = None
    transitions: list[Transition] = field(default_factory=list)
    last_reasons: tuple[str, ...] = ()

    @property
    def remaining_ref_gpu_hours(self) -> float:
        return max(0.0, self.job.work_ref_gpu_hours - self.done_ref_gpu_hours)


@dataclass
class ServiceRecord:
    service: InferenceService
    active: bool = True
    replicas: list[Allocation] = field(default_factory=list)
    served_rps: float = 0.0
    violations: int = 0
    last_reasons: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """GPU time delivered by one allocation over [from_h, to_h], and what it earned."""

    allocation_id: str
    item_id: str
    kind: str
    pool_id: str
    from_h: float
    to_h: float
    gpu_hours: float
    charge: Payment
