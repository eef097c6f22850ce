"""What a run measures, accumulated event by event, and the summary it reports.

Per pool the meter integrates, over simulated time, four disjoint kinds of GPU-hours:

- delivered: metered by the engine's usage records (work and replicas running);
- idle: free GPUs on nodes that are up (∫ free dt, from the engine's node state);
- held: GPUs of a job that finished between rounds, until the next round frees them;
- down: GPUs of a site that is dark.

They add up to capacity × time for every pool (a test checks it). Money comes from the
usage records' captured payments (fen); energy is delivered GPU-hours × TDP_kW × PUE.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from suanli.engine.records import UsageRecord
from suanli.sim.world import World

__all__ = ["JobCounts", "Meter", "RoundRow"]

F64 = npt.NDArray[np.float64]


@dataclass
class JobCounts:
    arrived: int = 0
    arrived_ref_gpu_hours: float = 0.0
    placed: int = 0  # placed at least once
    wait_h_sum: float = 0.0
    completed: int = 0
    gave_up: int = 0  # waited past the buyer's patience
    missed_deadline: int = 0
    preempted: int = 0
    delivered_ref_gpu_hours: float = 0.0


@dataclass(frozen=True, slots=True)
class RoundRow:
    """One round, after clearing: per hub busy GPUs, capacity up and posted price."""

    t_h: float
    busy_by_hub: tuple[float, ...]
    up_by_hub: tuple[float, ...]
    price_by_hub: tuple[float, ...]
    jobs_pending: int
    jobs_running: int
    jobs_placed: int
    demand_rps: float  # true demand: the requests that come
    served_rps: float
    slo_ok_rps: float
    planned_rps: float = 0.0  # what the round planned for (the estimator's output)


@dataclass
class Meter:
    world: World
    delivered: F64 = field(init=False)
    idle: F64 = field(init=False)
    held: F64 = field(init=False)
    down: F64 = field(init=False)
    seller_fen: F64 = field(init=False)
    buyer_fen: F64 = field(init=False)
    voucher_fen: F64 = field(init=False)
    fee_fen: F64 = field(init=False)
    job_gpu_hours: F64 = field(init=False)
    free: F64 = field(init=False)
    is_down: npt.NDArray[np.bool_] = field(init=False)
    last_h: float = 0.0
    demand_rps_h: float = 0.0
    served_rps_h: float = 0.0
    slo_ok_rps_h: float = 0.0
    cur_demand_rps: float = 0.0
    planned_rps_h: float = 0.0
    capacity_rps_h: float = 0.0
    cur_planned_rps: float = 0.0
    # (pool index, requests/s served, within SLO, buyer's value in yuan per request/s-hour)
    routes: list[tuple[int, float, bool, float]] = field(default_factory=list)
    # (pool index, requests/s the service replicas there can serve)
    capacity: list[tuple[int, float]] = field(default_factory=list)
    value_cny: float = 0.0  # what buyers' bids say the served work was worth
    jobs: JobCounts = field(default_factory=JobCounts)
    voucher_spend_fen: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    voucher_gpu_hours: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    voucher_buyers: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    rows: list[RoundRow] = field(default_factory=list)
    skipped_placements: int = 0
    busy_last_day: F64 = field(init=False)  # Σ over the last day's rounds of busy GPUs
    rounds_last_day: int = 0

    def __post_init__(self) -> None:
        n = len(self.world.pool_ids)
        for name in (
            "delivered",
            "idle",
            "held",
            "down",
            "seller_fen",
            "buyer_fen",
            "voucher_fen",
            "fee_fen",
            "job_gpu_hours",
            "busy_last_day",
        ):
            setattr(self, name, np.zeros(n))
        self.free = self.world.capacity_gpus.astype(np.float64)
        self.is_down = np.zeros(n, dtype=np.bool_)
        self._index = self.world.pool_index
        self._buyer_of: dict[str, str] = {}
        self._bid_of: dict[str, float] = {}

    # ----- time integrals -------------------------------------------------------------
    def integrate(self, t_h: float) -> None:
        """Accumulate the current rates from the last event up to ``t_h``."""
        dt = t_h - self.last_h
        if dt <= 0:
            return
        self.idle += self.free * dt
        self.down += np.where(self.is_down, self.world.capacity_gpus, 0) * dt
        served = sum(r[1] for r in self.routes)
        ok = sum(r[1] for r in self.routes if r[2])
        # requests served late are worth nothing to the buyer
        self.value_cny += sum(r[1] * r[3] for r in self.routes if r[2]) * dt
        self.demand_rps_h += self.cur_demand_rps * dt
        self.planned_rps_h += self.cur_planned_rps * dt
        self.capacity_rps_h += sum(c[1] for c in self.capacity) * dt
        self.served_rps_h += served * dt
        self.slo_ok_rps_h += ok * dt
        self.last_h = t_h

    def set_free(self, free: Iterable[float]) -> None:
        self.free = np.fromiter(free, dtype=np.float64, count=len(self.world.pool_ids))

    def drop_routes(self, pools: set[int]) -> None:
        """Replicas on ``pools`` are gone: their routes stop serving."""
        self.routes = [r for r in self.routes if r[0] not in pools]
        self.capacity = [c for c in self.capacity if c[0] not in pools]

    # ----- money and GPU time ---------------------------------------------------------
    def job_arrived(self, item_id: str, buyer: str, bid_cny_per_ref_gpu_hour: float) -> None:
        self._buyer_of[item_id] = buyer
        self._bid_of[item_id] = bid_cny_per_ref_gpu_hour

    def meter(self, records: Iterable[UsageRecord]) -> None:
        """Add the GPU time and money of usage records to their pools."""
        for u in records:
            i = self._index[u.pool_id]
            self.delivered[i] += u.gpu_hours
            c = u.charge
            self.seller_fen[i] += c.seller_fen
            self.buyer_fen[i] += c.buyer_fen
            self.voucher_fen[i] += c.voucher_fen
            self.fee_fen[i] += c.fee_fen
            if u.kind == "job":
                self.job_gpu_hours[i] += u.gpu_hours
                ref = u.gpu_hours * float(self.world.speed[i])
                self.jobs.delivered_ref_gpu_hours += ref
                self.value_cny += ref * self._bid_of.get(u.item_id, 0.0)
            if c.voucher_id is not None and c.voucher_fen > 0:
                self.voucher_spend_fen[c.voucher_id] += c.voucher_fen
                self.voucher_gpu_hours[c.voucher_id] += u.gpu_hours
                self.voucher_buyers[c.voucher_id].add(self._buyer_of.get(u.item_id, u.item_id))
