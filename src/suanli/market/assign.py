"""The walk: turn an ordered list of (item, pool) pairs into integral placements.

Every policy is an order over candidate pairs: the exchange orders by surplus net of
the price signal, the baselines by arrival and then their own preference. The walk goes
down the list once:

- a job pair places the whole gang if the job is still unplaced, the pool has the GPUs
  on its nodes (see ``topology``) and, where a voucher makes the pair worth it, the
  program can reserve its most possible draw;
- a service pair routes the city's remaining demand to the service's spare replica
  capacity on that pool, then adds whole replicas while they fit, the service is under
  its ``max_replicas`` and the demand they take is worth at least their GPUs at the
  pool's signal price.

It records which pools turned work away for lack of room: those are the scarce ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from suanli.market.arrays import PoolArrays
from suanli.market.job_candidates import JobCandidates
from suanli.market.service_candidates import ServiceCandidates
from suanli.market.snapshot import MarketSnapshot
from suanli.market.topology import free_histogram, take_gang
from suanli.market.vouchers import VoucherBook

__all__ = ["Walk", "WalkState"]

_EPS_RPS = 1e-9


@dataclass
class ServiceOnPool:
    replicas: int = 0
    required: int = 0  # of ``replicas``, those there only for the owner's min_replicas
    routed_rps: float = 0.0
    gpus_per_replica: int = 0
    cap_rps: float = 0.0
    nodes: list[tuple[int, ...]] = field(default_factory=list)


@dataclass
class WalkState:
    free: list[int]
    hist: list[list[int]]
    job_pool: list[int]
    job_nodes: list[tuple[int, ...]]
    job_u: list[float]  # surplus per GPU-hour of the placed pair
    job_value: list[float]  # buyer's value per GPU-hour (bid side, net of fee)
    job_voucher: list[int]
    item_rem: list[float]
    svc: dict[tuple[int, int], ServiceOnPool]
    routes: list[tuple[int, int, float, int]]  # (item, pool, rps, service pair index)
    denied: set[int]


class Walk:
    """Mutable assignment state for one round; ``run`` may be called for several passes.

    ``rent_cap``: the rent signal ``settle`` will be given. No price can then exceed
    reserve + rent_cap, so a voucher reserves the coverage share of that charge (never
    more than the share of the bid); without it, the share of the bid. Pass the same list
    to ``settle``, or a reservation may fall short of the draw.
    """

    def __init__(
        self,
        snapshot: MarketSnapshot,
        pools: PoolArrays,
        jobs: JobCandidates,
        services: ServiceCandidates,
        book: VoucherBook,
        *,
        rent_cap: list[float] | None = None,
    ) -> None:
        self.snapshot = snapshot
        self._rent_cap = rent_cap
        self.pools = pools
        self.jc = jobs
        self.sc = services
        self.book = book
        self.fee = snapshot.rules.fee_rate
        self.n_job_pairs = len(jobs.item)
        self._reserve = pools.reserve.tolist()
        self._speed = pools.speed.tolist()
        hist = [free_histogram(p.node_free_counts(), p.gpus_per_node) for p in snapshot.pools]
        # Node free counts at the start of the round (reasons compare against them).
        self.start_hist: tuple[tuple[int, ...], ...] = tuple(tuple(h) for h in hist)
        # (pool, GPUs, at start?) → whether such a gang fits; filled by ``fits``.
        self._fit_cache: dict[tuple[int, int, bool], bool] = {}
        self.state = WalkState(
            free=pools.free.tolist(),
            hist=hist,
            job_pool=[-1] * len(snapshot.jobs),
            job_nodes=[()] * len(snapshot.jobs),
            job_u=[0.0] * len(snapshot.jobs),
            job_value=[0.0] * len(snapshot.jobs),
            job_voucher=[-1] * len(snapshot.jobs),
            item_rem=[it.demand_rps for it in services.items],
            svc={},
            routes=[],
            denied=set(),
        )
        # Plain lists: the walk is a Python loop and list indexing beats numpy scalars.
        self._j_item = jobs.item.tolist()
        self._j_pool = jobs.pool.tolist()
        self._j_u = jobs.u.tolist()
        self._j_v = jobs.voucher.tolist()
        self._j_s = jobs.coverage.tolist()
        self._n = jobs.n.tolist()
        self._work = jobs.work.tolist()
        self._bid = jobs.bid.tolist()
        self._s_item = services.item.tolist()
        self._s_pool = services.pool.tolist()
        self._s_g = services.gpus_per_replica.tolist()
        self._s_cap = services.cap_rps.tolist()
        self._item_service = [it.service for it in services.items]
        self._item_value = [it.value_cny_per_rps_hour for it in services.items]
        # Replicas each service may still get under its max_replicas.
        self._replicas_left: list[float] = [
            math.inf if s.max_replicas is None else float(s.max_replicas) for s in snapshot.services
        ]

    def fits(self, p: int, n: int, *, at_start: bool) -> bool:
        """Whether a gang of ``n`` GPUs fits pool ``p``'s nodes at the start or the end of
        the walk (call the latter only once the walk is over)."""
        key = (p, n, at_start)
        hit = self._fit_cache.get(key)
        if hit is None:
            hist = self.start_hist[p] if at_start else self.state.hist[p]
            hit = self._fit_cache[key] = take_gang(list(hist), n) is not None
        return hit

    def pair_keys(self, y: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Surplus per GPU-hour of every pair (jobs then services), net of ``y`` if given."""
        u = np.concatenate([self.jc.u, self.sc.u])
        pool = np.concatenate([self.jc.pool, self.sc.pool])
        return (u - y[pool] if y is not None else u), pool

    def run(self, order: np.ndarray | list[int], y: list[float] | None = None) -> None:
        """Walk ``order`` (global pair indices: jobs first, then services)."""
        st = self.state
        nj = self.n_job_pairs
        zero = y is None
        for g in order.tolist() if isinstance(order, np.ndarray) else order:
            if g < nj:
                j = self._j_item[g]
                if st.job_pool[j] >= 0:
                    continue
                self._place_job(g, j, 0.0 if zero else y[self._j_pool[g]])  # type: ignore[index]
            else:
                s = g - nj
                i = self._s_item[s]
                if st.item_rem[i] <= _EPS_RPS:
                    continue
                p = self._s_pool[s]
                self._route(s, i, p, 0.0 if zero else y[p])  # type: ignore[index]

    def add_replicas(self, s: int, count: int, *, required: int = 0) -> int:
        """Add up to ``count`` replicas of service pair ``s``'s service on its pool, routing
        nothing (see ``route_spare``); the number added, as capacity, nodes and the
        service's ``max_replicas`` allow. The last ``required`` of them are there only for
        the owner's ``min_replicas`` (``settle`` bills them at the pool's price)."""
        st = self.state
        i = self._s_item[s]
        p = self._s_pool[s]
        g = self._s_g[s]
        on = self._on_pool(s, i, p)
        added = 0
        k = self._item_service[i]
        while added < count and self._replicas_left[k] >= 1:
            nodes = take_gang(st.hist[p], g) if st.free[p] >= g else None
            if nodes is None:
                st.denied.add(p)
                break
            self._replicas_left[k] -= 1
            st.free[p] -= g
            on.replicas += 1
            on.nodes.append(nodes)
            added += 1
        on.required += max(0, added - (count - required))
        return added

    def route_spare(self, s: int, most_rps: float) -> float:
        """Route up to ``most_rps`` of pair ``s``'s remaining city demand to the spare
        capacity of replicas already on its pool; the requests/s routed."""
        i = self._s_item[s]
        p = self._s_pool[s]
        on = self._on_pool(s, i, p)
        x = float(min(most_rps, self.state.item_rem[i], on.replicas * on.cap_rps - on.routed_rps))
        if x <= _EPS_RPS:
            return 0.0
        self._add_route(i, p, x, s, on)
        return x

    def _on_pool(self, s: int, i: int, p: int) -> ServiceOnPool:
        key = (self._item_service[i], p)
        on = self.state.svc.get(key)
        if on is None:
            on = self.state.svc[key] = ServiceOnPool(
                gpus_per_replica=self._s_g[s], cap_rps=self._s_cap[s]
            )
        return on

    def _place_job(self, g: int, j: int, y_p: float) -> None:
        st = self.state
        p = self._j_pool[g]
        n = self._n[j]
        # Room on the nodes first (a trial on a copy), so no voucher budget is held for a
        # gang that cannot land.
        if st.free[p] < n or take_gang(list(st.hist[p]), n) is None:
            st.denied.add(p)
            return
        v = self._j_v[g]
        u = self._j_u[g]
        value = self._speed[p] * self._bid[j] / (1.0 + self.fee)
        if v >= 0:
            s = self._j_s[g]
            value /= 1.0 - s
            most_fen = math.ceil(s / (1.0 - s) * self._bid[j] * self._work[j] * 100)
            if self._rent_cap is not None:
                # Seller + fee at the highest price settle can set, plus 2 fen for rounding.
                top_fen = (
                    (self._reserve[p] + self._rent_cap[p])
                    * (1.0 + self.fee)
                    * self._work[j]
                    / self._speed[p]
                    * 100
                )
                most_fen = min(most_fen, math.ceil(s * (top_fen + 2.0)))
            key = f"j{j}"
            if not self.book.reserve(v, self.snapshot.jobs[j].buyer, key, most_fen):
                # The program is out of budget for this buyer: the pair without voucher.
                v = -1
                value = self._speed[p] * self._bid[j] / (1.0 + self.fee)
                u = value - self._reserve[p]
                if u - y_p < 0:
                    return
        nodes = take_gang(st.hist[p], n)
        if nodes is None:
            st.denied.add(p)
            return
        st.free[p] -= n
        st.job_pool[j] = p
        st.job_nodes[j] = nodes
        st.job_u[j] = u
        st.job_value[j] = value
        st.job_voucher[j] = v

    def _route(self, s: int, i: int, p: int, y_p: float) -> None:
        st = self.state
        g = self._s_g[s]
        cap = self._s_cap[s]
        on = self._on_pool(s, i, p)
        rem = st.item_rem[i]
        spare = on.replicas * cap - on.routed_rps
        if spare > _EPS_RPS:
            x = min(rem, spare)
            self._add_route(i, p, x, s, on)
            rem -= x
        value_per_rps = self._item_value[i] / (1.0 + self.fee)
        k = self._item_service[i]
        while rem > _EPS_RPS:
            take = min(rem, cap)
            if take * value_per_rps < g * (self._reserve[p] + y_p):
                return
            if self._replicas_left[k] < 1:
                return
            if st.free[p] < g:
                st.denied.add(p)
                return
            nodes = take_gang(st.hist[p], g)
            if nodes is None:
                st.denied.add(p)
                return
            self._replicas_left[k] -= 1
            st.free[p] -= g
            on.replicas += 1
            on.nodes.append(nodes)
            self._add_route(i, p, take, s, on)
            rem -= take

    def _add_route(self, i: int, p: int, x: float, s: int, on: ServiceOnPool) -> None:
        st = self.state
        st.item_rem[i] -= x
        on.routed_rps += x
        st.routes.append((i, p, x, s))
