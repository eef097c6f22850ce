"""Placement policies behind one interface, so benchmarks and the simulator compare them.

- ``exchange``: the market. Filters, then prices from the LP dual (see ``duals``), then a
  walk down all candidate pairs by surplus net of price, then a fill pass at reserve for
  what the prices held back; uniform prices = reserve + scarcity rent (``settle``).
- ``local``: the status quo. Each buyer uses only sites in its own province or hub, first
  come first served, cheapest local pool at the posted reserve.
- ``cheapest``: a price-taking broker. First come first served, cheapest feasible pool per
  reference GPU-hour, blind to user latency (services may break their TTFT).
- ``nearest``: price-blind. First come first served, the nearest feasible site that the
  bid covers at its posted reserve.
- ``lp-bound`` and ``milp``: references from HiGHS (see ``lp``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from suanli.errors import InvalidInput
from suanli.latency.model import rtt_matrix_for
from suanli.market.arrays import PoolArrays, pool_arrays, voucher_arrays
from suanli.market.assign import Walk
from suanli.market.context import MarketContext
from suanli.market.decision import Decision
from suanli.market.job_candidates import JobCandidates, job_candidates
from suanli.market.service_candidates import ServiceCandidates, service_candidates
from suanli.market.settle import settle
from suanli.market.snapshot import MarketSnapshot
from suanli.market.validate import validate_snapshot
from suanli.market.vouchers import VoucherBook

__all__ = ["POLICY_NAMES", "Policy", "Prepared", "make_policy", "prepare"]

F64 = npt.NDArray[np.float64]


class Policy(Protocol):
    """Clears one round: a snapshot in, a decision out. Pure: no I/O, no clock."""

    name: str

    def clear(self, snapshot: MarketSnapshot) -> Decision: ...


@dataclass(frozen=True)
class Prepared:
    """Everything derived from a snapshot before placement."""

    pools: PoolArrays
    jobs: JobCandidates
    services: ServiceCandidates
    book: VoucherBook


def prepare(
    snapshot: MarketSnapshot,
    ctx: MarketContext,
    *,
    order: str = "surplus",
    local_only: bool = False,
    respect_latency: bool = True,
) -> Prepared:
    validate_snapshot(snapshot, ctx)
    pools = pool_arrays(snapshot, ctx)
    vouchers = voucher_arrays(snapshot, pools)
    cities = list(ctx.cities.values())
    sites = list(snapshot.sites.values())  # same order as pools.site_ids
    rtt = rtt_matrix_for(cities, sites, ctx.latency)
    jobs = job_candidates(
        snapshot, ctx, pools, vouchers, order=order, local_only=local_only, origin_rtt_ms=rtt
    )
    services = service_candidates(
        snapshot,
        ctx,
        pools,
        rtt,
        order=order,
        respect_latency=respect_latency,
        local_only=local_only,
    )
    return Prepared(pools=pools, jobs=jobs, services=services, book=VoucherBook(vouchers.programs))


class ArrivalOrderPolicy:
    """A baseline: first come first served, each item down its own candidate ranking."""

    def __init__(
        self, ctx: MarketContext, name: str, order: str, local_only: bool, respect_latency: bool
    ) -> None:
        self.ctx = ctx
        self.name = name
        self.order = order
        self.local_only = local_only
        self.respect_latency = respect_latency

    def clear(self, snapshot: MarketSnapshot) -> Decision:
        prep = prepare(
            snapshot,
            self.ctx,
            order=self.order,
            local_only=self.local_only,
            respect_latency=self.respect_latency,
        )
        walk = Walk(snapshot, prep.pools, prep.jobs, prep.services, prep.book)
        arrival_jobs = np.array([j.submitted_at_h for j in snapshot.jobs], dtype=np.float64)
        arrival_svc = np.array(
            [snapshot.services[it.service].submitted_at_h for it in prep.services.items],
            dtype=np.float64,
        )
        arrival = np.concatenate(
            [arrival_jobs[prep.jobs.item], arrival_svc[prep.services.item]]
            if len(arrival_svc)
            else [arrival_jobs[prep.jobs.item], np.zeros(0)]
        )
        item = np.concatenate([prep.jobs.item, prep.services.item + len(snapshot.jobs)])
        rank = np.concatenate([prep.jobs.rank, prep.services.rank])
        order = np.lexsort((-rank, item, arrival))
        walk.run(order)
        return settle(self.name, snapshot, prep.pools, walk, None)


POLICY_NAMES = ("exchange", "local", "cheapest", "nearest", "lp-bound", "milp")


def make_policy(name: str, ctx: MarketContext, *, milp_time_limit_s: float = 60.0) -> Policy:
    """The policy called ``name``; InvalidInput listing the valid names otherwise."""
    from suanli.market.exchange import ExchangePolicy
    from suanli.market.lp import LpBoundPolicy, MilpPolicy

    factories: Mapping[str, Callable[[], Policy]] = {
        "exchange": lambda: ExchangePolicy(ctx),
        "local": lambda: ArrivalOrderPolicy(ctx, "local", "cheapest", True, True),
        "cheapest": lambda: ArrivalOrderPolicy(ctx, "cheapest", "cheapest", False, False),
        "nearest": lambda: ArrivalOrderPolicy(ctx, "nearest", "nearest", False, True),
        "lp-bound": lambda: LpBoundPolicy(ctx),
        "milp": lambda: MilpPolicy(ctx, time_limit_s=milp_time_limit_s),
    }
    if name not in factories:
        raise InvalidInput(f"unknown policy {name!r}; choose from {', '.join(POLICY_NAMES)}")
    return factories[name]()
