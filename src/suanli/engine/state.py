"""The exchange's state between rounds: capacity per node, work and its lifecycle.

One object, driven the same way by the simulator and the service:

- ``submit_job`` / ``submit_service`` / ``cancel`` — buyers' requests;
- ``snapshot(now)`` — the immutable market view for the clearing engine;
- ``apply(decision, now)`` — take the decided GPUs on concrete nodes, start the work;
- ``advance(now)`` — finish work whose time has come, free its GPUs, meter usage;
- ``fail_site`` / ``recover_site`` — outages: work is preempted, keeps its progress up to
  its last checkpoint, and waits for the next round to be placed again.

Every change returns the transitions it made (with reasons) and usage it metered.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace

from suanli.domain import Pool, Site, SiteId
from suanli.engine.ledger_rules import capture_share
from suanli.engine.lifecycle import Transition, WorkState, check_transition
from suanli.engine.nodes import PoolNodes
from suanli.engine.records import Allocation, JobRecord, ServiceRecord, UsageRecord
from suanli.errors import InvalidInput
from suanli.market.decision import Decision, Payment
from suanli.market.snapshot import (
    BatchJob,
    InferenceService,
    MarketRules,
    MarketSnapshot,
    PoolState,
    VoucherProgram,
)

__all__ = ["ExchangeState"]

Nodes = tuple[tuple[int, int], ...]  # (node index, GPUs) pairs of one allocation

_FRAGMENTED = (
    "capacity: the pool's free GPUs are split over nodes differently than the round "
    "assumed; waits for the next round"
)


class ExchangeState:
    """Mutable state of one exchange. Not thread-safe; callers serialize access."""

    def __init__(
        self,
        sites: Mapping[SiteId, Site],
        pools: Sequence[Pool],
        speed: Mapping[str, float],
        *,
        rules: MarketRules | None = None,
        vouchers: Iterable[VoucherProgram] = (),
    ) -> None:
        self.sites = dict(sites)
        self.pools: dict[str, Pool] = {p.id: p for p in pools}
        self.speed = dict(speed)
        self.reserve: dict[str, float] = {p.id: p.reserve_cny_per_gpu_hour for p in pools}
        self.nodes: dict[str, PoolNodes] = {
            p.id: PoolNodes(p.nodes, p.gpus_per_node) for p in pools
        }
        self.rules = rules or MarketRules()
        self.vouchers = {v.id: v for v in vouchers}
        self.jobs: dict[str, JobRecord] = {}
        self.services: dict[str, ServiceRecord] = {}
        self.down_sites: set[str] = set()
        self.usage: list[UsageRecord] = []
        self._alloc_seq = 0

    # ----- requests -------------------------------------------------------------------
    def submit_job(
        self, job: BatchJob, now_h: float, *, checkpoint_every_h: float | None = None
    ) -> Transition:
        if job.id in self.jobs:
            raise InvalidInput(f"job {job.id!r} already exists")
        rec = JobRecord(
            job=job,
            state=WorkState.PENDING,
            submitted_at_h=now_h,
            deadline_at_h=None if job.deadline_h is None else now_h + job.deadline_h,
            checkpoint_every_h=checkpoint_every_h,
        )
        self.jobs[job.id] = rec
        t = Transition(job.id, now_h, WorkState.PENDING, WorkState.PENDING, "submitted")
        rec.transitions.append(t)
        return t

    def submit_service(self, service: InferenceService) -> None:
        if service.id in self.services:
            raise InvalidInput(f"service {service.id!r} already exists")
        self.services[service.id] = ServiceRecord(service=service)

    def set_service_demand(self, service_id: str, demand_rps: Mapping[str, float]) -> None:
        rec = self.services[service_id]
        rec.service = replace(rec.service, demand_rps=dict(demand_rps))

    def cancel(self, job_id: str, now_h: float, reason: str = "cancelled by buyer") -> Transition:
        rec = self.jobs[job_id]
        check_transition(job_id, rec.state, WorkState.CANCELLED)
        if rec.allocation is not None:
            self._release(rec.allocation, now_h, delivered=True)
            rec.allocation = None
        return self._move(rec, WorkState.CANCELLED, now_h, reason)

    # ----- the market round -----------------------------------------------------------
    def snapshot(self, now_h: float) -> MarketSnapshot:
        """The market as it stands: free capacity on nodes that are up, pending work."""
        pools = tuple(
            PoolState(
                id=p.id,
                site_id=p.site_id,
                gpu=p.gpu,
                free_gpus=self.nodes[p.id].free_gpus,
                gpus_per_node=p.gpus_per_node,
                fabric=p.fabric,
                reserve_cny_per_gpu_hour=self.reserve[p.id],
                speed=self.speed[p.id],
                free_nodes=self.nodes[p.id].free_counts(),
                total_gpus=p.gpu_count,
            )
            for p in self.pools.values()
            if p.site_id not in self.down_sites
        )
        jobs = []
        for rec in self.jobs.values():
            if rec.state is not WorkState.PENDING:
                continue
            deadline = None if rec.deadline_at_h is None else rec.deadline_at_h - now_h
            if deadline is not None and deadline <= 0:
                continue  # expired; ``expire`` fails it
            jobs.append(
                replace(
                    rec.job,
                    work_ref_gpu_hours=max(rec.remaining_ref_gpu_hours, 1e-9),
                    deadline_h=deadline,
                )
            )
        services = tuple(r.service for r in self.services.values() if r.active)
        return MarketSnapshot(
            now_h=now_h,
            sites={s: self.sites[s] for s in self.sites if s not in self.down_sites},
            pools=pools,
            jobs=tuple(jobs),
            services=services,
            vouchers=tuple(self.vouchers.values()),
            rules=self.rules,
        )

    def release_services(self, now_h: float) -> list[UsageRecord]:
        """Free every service replica (metering it) before services are cleared again."""
        out = []
        for rec in self.services.values():
            for alloc in rec.replicas:
                out.extend(self._release(alloc, now_h, delivered=True))
            rec.replicas = []
        return out

    def apply(self, decision: Decision, now_h: float, *, start: bool = True) -> list[Transition]:
        """Take the decided GPUs and start (``start``) or just place the work.

        A placement whose GPUs cannot be found on concrete nodes (the market packed a free-GPU
        histogram in its own order; see ``_take_nodes``) is skipped: a job stays pending with
        the reason, a service runs one replica fewer this round.
        """
        out: list[Transition] = []
        job_nodes, replica_nodes = self._take_nodes(decision)
        skipped: set[str] = set()
        for pl in decision.jobs:
            rec = self.jobs[pl.job_id]
            nodes = job_nodes[pl.job_id]
            if nodes is None:
                skipped.add(pl.job_id)
                rec.last_reasons = (_FRAGMENTED,)
                continue
            rec.allocation = self._allocation(
                pl.job_id,
                "job",
                pl.pool_id,
                pl.gpus,
                nodes,
                pl.price_cny_per_gpu_hour,
                now_h,
                pl.duration_h,
                pl.payment,
            )
            out.append(self._move(rec, WorkState.PLACED, now_h, pl.why, pl.pool_id))
            if start:
                out.append(self._move(rec, WorkState.RUNNING, now_h, "started", pl.pool_id))
        price_of = {pp.pool_id: pp.price_cny_per_gpu_hour for pp in decision.prices}
        for so in decision.services:
            rec_s = self.services[so.service_id]
            horizon = self.rules.service_horizon_h
            total_gpus = sum(r.replicas * r.gpus_per_replica for r in so.replicas) or 1
            for i, rp in enumerate(so.replicas):
                price = price_of[rp.pool_id]
                for nodes in replica_nodes.get((so.service_id, i), []):
                    share = rp.gpus_per_replica / total_gpus
                    rec_s.replicas.append(
                        self._allocation(
                            so.service_id,
                            "replica",
                            rp.pool_id,
                            rp.gpus_per_replica,
                            nodes,
                            price,
                            now_h,
                            horizon,
                            capture_share(so.payment, share),
                        )
                    )
            rec_s.served_rps = so.served_rps
            rec_s.last_reasons = tuple(str(r) for rs in so.unserved.values() for r in rs)
        for u in decision.unplaced:
            if u.kind == "job" and u.item_id in self.jobs:
                self.jobs[u.item_id].last_reasons = tuple(str(r) for r in u.reasons)
        draws = dict(decision.voucher_draws_fen)
        for pl in decision.jobs:
            v_id = pl.payment.voucher_id
            if v_id is not None and pl.job_id in skipped:
                draws[v_id] = draws.get(v_id, 0) - pl.payment.voucher_fen
        for vid, fen in draws.items():
            v = self.vouchers[vid]
            self.vouchers[vid] = replace(v, spent_cny=v.spent_cny + fen / 100)
        for pl in decision.jobs:
            v_id = pl.payment.voucher_id
            if v_id is not None and pl.job_id not in skipped:
                v = self.vouchers[v_id]
                by_buyer = dict(v.spent_by_buyer_cny)
                by_buyer[pl.buyer] = by_buyer.get(pl.buyer, 0.0) + pl.payment.voucher_fen / 100
                self.vouchers[v_id] = replace(v, spent_by_buyer_cny=by_buyer)
        return out

    def _take_nodes(
        self, decision: Decision
    ) -> tuple[dict[str, Nodes | None], dict[tuple[str, int], list[Nodes]]]:
        """Concrete nodes for every placement (None / left out where they cannot be found).

        The market decided on each pool's free-GPU histogram in its own order (by surplus);
        best fit depends on order, so taking pieces in decision order can strand a placement
        the market had room for. Taking the biggest per-node pieces first (first-fit
        decreasing) finds a packing again in all but rare cases.
        """
        pieces: list[tuple[int, int, int, str, tuple[int, ...], tuple[str, int] | str]] = []
        for pl in decision.jobs:
            counts = tuple(pl.nodes)
            pieces.append(
                (max(counts, default=0), pl.gpus, len(pieces), pl.pool_id, counts, pl.job_id)
            )
        for so in decision.services:
            for i, rp in enumerate(so.replicas):
                counts = _node_counts(rp.gpus_per_replica, self.pools[rp.pool_id].gpus_per_node)
                for _ in range(rp.replicas):
                    pieces.append(
                        (
                            max(counts),
                            rp.gpus_per_replica,
                            len(pieces),
                            rp.pool_id,
                            counts,
                            (so.service_id, i),
                        )
                    )
        pieces.sort(key=lambda x: (-x[0], -x[1], x[2]))
        jobs: dict[str, Nodes | None] = {}
        replicas: dict[tuple[str, int], list[Nodes]] = {}
        for _, _, _, pool_id, counts, key in pieces:
            try:
                nodes: Nodes | None = self.nodes[pool_id].take(counts)
            except ValueError:
                nodes = None
            if isinstance(key, str):
                jobs[key] = nodes
            elif nodes is not None:
                replicas.setdefault(key, []).append(nodes)
        return jobs, replicas

    def start(self, job_id: str, now_h: float) -> Transition:
        """A placed job began running (the service's agents report this)."""
        rec = self.jobs[job_id]
        return self._move(rec, WorkState.RUNNING, now_h, "started", rec.job.id)

    def advance(self, now_h: float) -> tuple[list[Transition], list[UsageRecord]]:
        """Finish running jobs whose work is done by ``now_h``; fail expired pending ones."""
        transitions: list[Transition] = []
        usage: list[UsageRecord] = []
        for rec in self.jobs.values():
            alloc = rec.allocation
            if rec.state is WorkState.RUNNING and alloc is not None:
                if alloc.started_at_h + alloc.planned_h <= now_h + 1e-9:
                    end = alloc.started_at_h + alloc.planned_h
                    usage.extend(self._release(alloc, end, delivered=True))
                    rec.done_ref_gpu_hours = rec.job.work_ref_gpu_hours
                    rec.allocation = None
                    transitions.append(
                        self._move(rec, WorkState.SUCCEEDED, end, "work done", alloc.pool_id)
                    )
            elif (
                rec.state is WorkState.PENDING
                and rec.deadline_at_h is not None
                and rec.deadline_at_h <= now_h
            ):
                why = "deadline passed before a pool could take it"
                if rec.last_reasons:
                    why += ": " + "; ".join(rec.last_reasons)
                transitions.append(self._move(rec, WorkState.FAILED, now_h, why))
        return transitions, usage

    # ----- outages --------------------------------------------------------------------
    def fail_site(self, site_id: str, now_h: float, reason: str) -> list[Transition]:
        """Take a site down: its work is preempted back to pending, keeping checkpoints."""
        self.down_sites.add(site_id)
        pools = {p.id for p in self.pools.values() if p.site_id == site_id}
        out: list[Transition] = []
        for rec in self.jobs.values():
            alloc = rec.allocation
            if alloc is None or alloc.pool_id not in pools:
                continue
            ran_h = max(0.0, now_h - alloc.started_at_h)
            if rec.checkpoint_every_h:
                ran_h = math.floor(ran_h / rec.checkpoint_every_h) * rec.checkpoint_every_h
            else:
                ran_h = 0.0
            rec.done_ref_gpu_hours += ran_h * alloc.gpus * self.speed[alloc.pool_id]
            self._release(alloc, now_h, delivered=True)
            rec.allocation = None
            out.append(self._move(rec, WorkState.PREEMPTED, now_h, reason, alloc.pool_id))
            out.append(self._move(rec, WorkState.PENDING, now_h, "waiting to be placed again"))
        for srec in self.services.values():
            kept = []
            for alloc in srec.replicas:
                if alloc.pool_id in pools:
                    self._release(alloc, now_h, delivered=True)
                else:
                    kept.append(alloc)
            srec.replicas = kept
        for pid in pools:
            self.nodes[pid].set_up(False)
        return out

    def recover_site(self, site_id: str) -> None:
        self.down_sites.discard(site_id)
        for p in self.pools.values():
            if p.site_id == site_id:
                self.nodes[p.id].set_up(True)

    # ----- internals ------------------------------------------------------------------
    def _allocation(
        self,
        item_id: str,
        kind: str,
        pool_id: str,
        gpus: int,
        nodes: tuple[tuple[int, int], ...],
        price: float,
        now_h: float,
        planned_h: float,
        payment: Payment,
    ) -> Allocation:
        self._alloc_seq += 1
        return Allocation(
            id=f"a{self._alloc_seq}",
            item_id=item_id,
            kind=kind,
            pool_id=pool_id,
            gpus=gpus,
            nodes=nodes,
            price_cny_per_gpu_hour=price,
            started_at_h=now_h,
            planned_h=planned_h,
            payment=payment,
        )

    def _release(self, alloc: Allocation, end_h: float, *, delivered: bool) -> list[UsageRecord]:
        self.nodes[alloc.pool_id].give(alloc.nodes)
        hours = max(0.0, end_h - alloc.started_at_h) if delivered else 0.0
        share = hours / alloc.planned_h if alloc.planned_h > 0 else 0.0
        rec = UsageRecord(
            allocation_id=alloc.id,
            item_id=alloc.item_id,
            kind=alloc.kind,
            pool_id=alloc.pool_id,
            from_h=alloc.started_at_h,
            to_h=alloc.started_at_h + hours,
            gpu_hours=hours * alloc.gpus,
            charge=capture_share(alloc.payment, share),
        )
        self.usage.append(rec)
        return [rec]

    def _move(
        self, rec: JobRecord, to: WorkState, at_h: float, reason: str, pool_id: str | None = None
    ) -> Transition:
        check_transition(rec.job.id, rec.state, to)
        t = Transition(rec.job.id, at_h, rec.state, to, reason, pool_id)
        rec.state = to
        rec.transitions.append(t)
        return t


def _node_counts(gpus: int, gpus_per_node: int) -> tuple[int, ...]:
    """GPUs per node of one replica, as the market's topology lays it out: whole nodes
    first, then the remainder on one node (``market.topology.take_gang``)."""
    whole, rest = divmod(gpus, gpus_per_node) if gpus > gpus_per_node else (0, gpus)
    return (gpus_per_node,) * whole + ((rest,) if rest else ())
