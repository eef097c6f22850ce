"""Reading and solving a clearing round: rows → engine → a plan, before any write.

See :mod:`suanli.service.clearing` for the whole round.

Services enter a round in one of two ways:

- whole, when none of its replicas is live (new, or all of them reached their billing
  horizon): the round places every replica its planned demand needs;
- as a scale-up, when it has live replicas but its planned demand exceeds what they
  were routed: only the residual demand enters, with its replica bounds reduced by the
  live replicas, and the new replicas are placed beside the live ones (which keep their
  placement, hold and routes). Demand that rises is thus served from the next round,
  not only at the next horizon. Mid-horizon rounds only ever add: a replica leaves at
  its horizon, when the round does not place it again, and the estimator's hysteresis
  decides when the plan goes down (:mod:`suanli.market.demand_estimate`).

Which busy services enter as scale-ups, and their reasons, are in
:mod:`suanli.service.scale_up`; this module holds the round's reading, admission
(wallet holds) and solve.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from suanli.engine.lifecycle import WorkState
from suanli.engine.records import JobRecord, ServiceRecord
from suanli.engine.state import ExchangeState
from suanli.market.decision import Decision
from suanli.market.policies import make_policy
from suanli.market.snapshot import (
    BatchJob,
    BuyerId,
    InferenceService,
    JobId,
    MarketRules,
    ServiceId,
)
from suanli.market.valuation import SECONDS_PER_HOUR, request_value_cny
from suanli.service.clock import hours
from suanli.service.ledger import wallet
from suanli.service.market_view import MarketView, load_market_view, voucher_programs
from suanli.service.runtime import Runtime
from suanli.service.scale_up import (
    ScaleUp,
    mark_scale_up_notes,
    note_held_scale_ups,
    scale_ups,
)
from suanli.service.service_demand import DemandPlan, load_estimates, plan_demand, seconds
from suanli.service.tables import (
    AllocationRow,
    JobRow,
    LedgerAccount,
    ServiceRow,
)

__all__ = ["RoundPlan", "RoundSummary", "plan_round"]

# Fen added to a job's most-possible cost: the engine rounds each payment leg to the fen.
_ROUNDING_MARGIN_FEN = 2
_NO_DEMAND = (
    "demand: gateways measured no requests for a while, so none are planned; it is "
    "placed again as soon as they measure demand (or set replicas.min)"
)


@dataclass
class RoundSummary:
    round_id: int | None
    pending_jobs: int
    pending_services: int
    jobs_placed: int = 0
    services_placed: int = 0
    gpus_placed: int = 0
    expired: int = 0
    solve_s: float = 0.0
    gpus_offered: int = 0
    gpus_allocated: int = 0
    prices: dict[str, float] = field(default_factory=dict)
    stored_prices: dict[str, float] = field(default_factory=dict)
    services_scaled: int = 0  # services with live replicas that got more this round


@dataclass
class RoundPlan:
    """What the round decided, before any row is written."""

    summary: RoundSummary
    view: MarketView
    expired: list[tuple[str, WorkState, str]] = field(default_factory=list)
    notes: dict[str, list[str]] = field(default_factory=dict)  # item id → reasons
    st: ExchangeState | None = None
    decision: Decision | None = None
    snapshot_sizes: tuple[int, int, int] = (0, 0, 0)
    horizons_over: bool = False
    # Per active service: the demand planned now (measured or declared), for the ones
    # whose plan or estimates' hysteresis state differ from what their row holds.
    demand: dict[str, DemandPlan] = field(default_factory=dict)
    # Services with live replicas entered for their residual demand (see ScaleUp).
    scale_ups: dict[str, ScaleUp] = field(default_factory=dict)

    @property
    def writes(self) -> bool:
        return bool(
            self.decision or self.expired or self.notes or self.horizons_over or self.demand
        )


def plan_round(session: Session, rt: Runtime, now: datetime) -> RoundPlan:
    """Read the rows and solve the round; nothing is written (see ``round_write``)."""
    now_h = hours(now)
    horizon_h = rt.settings.service_horizon_h
    pending = list(
        session.scalars(
            select(JobRow)
            .where(JobRow.state == WorkState.PENDING.value)
            .order_by(JobRow.submitted_at, JobRow.id)
        )
    )
    services = list(
        session.scalars(
            select(ServiceRow).where(ServiceRow.state == "active").order_by(ServiceRow.submitted_at)
        )
    )
    demand = {s.id: _plan_demand(s, now, rt) for s in services}
    view, horizons_over = _live_view(session, now)
    busy_services = {a.item_id for a in view.active if a.kind == "replica"}
    rows_by_id = {s.id: s for s in services}
    busy = [s for s in services if s.id in busy_services]
    services = [s for s in services if s.id not in busy_services]
    summary = RoundSummary(None, len(pending), len(services))
    summary.gpus_offered = sum(p.gpu_count for p in view.pools)
    summary.gpus_allocated = sum(a.gpus for a in view.active)
    plan = RoundPlan(summary, view, horizons_over=horizons_over)
    plan.demand = {i: d for i, d in demand.items() if _demand_moved(rows_by_id[i], d)}
    busy_values = [_service_value(s, demand[s.id]) for s in busy]
    ups, held = scale_ups(session, rt, busy_values, view)
    plan.scale_ups = {i: up for i, (up, _) in ups.items()}
    note_held_scale_ups(plan.notes, held, rows_by_id)
    if not pending and not services and not ups:
        return plan

    rules = MarketRules(fee_rate=rt.settings.fee_rate, service_horizon_h=horizon_h)
    st = ExchangeState(
        view.sites,
        view.pools,
        view.speed,
        rules=rules,
        vouchers=voucher_programs(session, now),
    )
    _occupy(st, view)
    jobs_by_id = {j.id: j for j in pending}
    for row in pending:
        st.jobs[row.id] = _job_record(row)
    expired, _ = st.advance(now_h)
    for t in expired:
        jobs_by_id.pop(t.item_id)
        plan.expired.append((t.item_id, t.to, t.reason))
    summary.expired = len(expired)

    # Admission: the most each item could cost, against the buyer's wallet.
    values = [_service_value(svc, demand[svc.id]) for svc in services]
    values += [svc for _, svc in ups.values()]
    tenants = {j.tenant_id for j in jobs_by_id.values()} | {v.buyer for v in values}
    funds = _wallets(session, tenants)
    _admit_jobs(st, plan, list(jobs_by_id.values()), funds)
    _admit_services(st, plan, values, funds, horizon_h)

    snapshot = st.snapshot(now_h)
    if snapshot.jobs or snapshot.services:
        policy = make_policy("exchange", rt.ctx)
        t0 = time.perf_counter()
        decision = policy.clear(snapshot)
        summary.solve_s = time.perf_counter() - t0
        st.apply(decision, now_h, start=False)
        plan.st, plan.decision = st, decision
        plan.snapshot_sizes = (len(snapshot.pools), len(snapshot.jobs), len(snapshot.services))
        _note_unplaced(plan, st, decision)
    mark_scale_up_notes(plan.notes, plan.scale_ups)
    return plan


def _live_view(session: Session, now: datetime) -> tuple[MarketView, bool]:
    """The market with only live allocations (replicas whose horizon ended are settled
    when the round is written: free already), and whether any horizon ended."""
    view = load_market_view(session, now)
    live = [a for a in view.active if not _horizon_over(a, now)]
    over = len(live) != len(view.active)
    return MarketView(view.sites, view.pools, view.speed, view.seller_of_pool, live), over


def _note_unplaced(plan: RoundPlan, st: ExchangeState, decision: Decision) -> None:
    """The engine's reasons for work the round left without a placement."""
    for u in decision.unplaced:
        plan.notes[u.item_id] = [str(r) for r in u.reasons]
    for so in decision.services:
        if not st.services[so.service_id].replicas:
            plan.notes[so.service_id] = [str(r) for rs in so.unserved.values() for r in rs]


def _admit_jobs(
    st: ExchangeState, plan: RoundPlan, jobs: list[JobRow], funds: dict[str, int]
) -> None:
    for row in jobs:
        most = math.ceil(row.bid_cny_per_ref_gpu_hour * _remaining(row) * 100)
        most += _ROUNDING_MARGIN_FEN
        if funds.get(row.tenant_id, 0) >= most:
            funds[row.tenant_id] -= most
        else:
            del st.jobs[row.id]
            plan.notes[row.id] = [_funds_reason(funds.get(row.tenant_id, 0), most, "job")]


def _admit_services(
    st: ExchangeState,
    plan: RoundPlan,
    values: list[InferenceService],
    funds: dict[str, int],
    horizon_h: float,
) -> None:
    for svc in values:
        if sum(svc.demand_rps.values()) <= 0 and svc.min_replicas == 0:
            plan.notes[svc.id] = [_NO_DEMAND]
            continue
        most = _service_most_fen(svc, horizon_h)
        if funds.get(svc.buyer, 0) >= most:
            funds[svc.buyer] -= most
            st.services[svc.id] = ServiceRecord(service=svc)
        else:
            plan.notes[svc.id] = [_funds_reason(funds.get(svc.buyer, 0), most, "service")]


def _horizon_over(alloc: AllocationRow, now: datetime) -> bool:
    return alloc.kind == "replica" and alloc.placed_at + timedelta(hours=alloc.planned_h) <= now


def _remaining(row: JobRow) -> float:
    return max(row.work_ref_gpu_hours - row.done_ref_gpu_hours, 1e-9)


def _job_record(row: JobRow) -> JobRecord:
    job = BatchJob(
        id=JobId(row.id),
        buyer=BuyerId(row.tenant_id),
        gpus=row.gpus,
        work_ref_gpu_hours=row.work_ref_gpu_hours,
        bid_cny_per_ref_gpu_hour=row.bid_cny_per_ref_gpu_hour,
        origin_city=row.origin_city,
        data_gb=row.data_gb,
        min_mem_gb=row.min_mem_gb,
        allowed_gpus=frozenset(row.allowed_gpus) if row.allowed_gpus else None,
        interruptible=row.interruptible,
        submitted_at_h=hours(row.submitted_at),
    )
    return JobRecord(
        job=job,
        state=WorkState.PENDING,
        submitted_at_h=hours(row.submitted_at),
        deadline_at_h=hours(row.deadline_at) if row.deadline_at else None,
        checkpoint_every_h=row.checkpoint_every_h,
        done_ref_gpu_hours=row.done_ref_gpu_hours,
        last_reasons=tuple(row.last_reasons or ()),
    )


def _plan_demand(row: ServiceRow, now: datetime, rt: Runtime) -> DemandPlan:
    """The service's demand plan now, over the catalogue's cities only (the engine plans
    for no other; gateways' reports fold only those in)."""
    plan = plan_demand(row, seconds(now), rt.settings.estimator)
    cities = rt.ctx.cities
    return replace(
        plan,
        planned={c: rps for c, rps in plan.planned.items() if c in cities},
        estimates={c: e for c, e in plan.estimates.items() if c in cities},
    )


def _demand_moved(row: ServiceRow, plan: DemandPlan) -> bool:
    """Whether the row must be written: another plan, or hysteresis state that moved."""
    if (row.planned_demand_rps or {}) != plan.planned:
        return True
    stored = load_estimates(row.demand_estimates)
    return any(
        (stored[c].planned_rps, stored[c].low_since_s) != (e.planned_rps, e.low_since_s)
        for c, e in plan.estimates.items()
        if c in stored
    )


def _service_value(row: ServiceRow, demand: DemandPlan) -> InferenceService:
    """The service as the engine sees it: the demand planned now (measured, or declared
    where nothing was measured), the token profile measured (or declared), its bids."""
    return InferenceService(
        id=ServiceId(row.id),
        buyer=BuyerId(row.tenant_id),
        model=row.model,
        demand_rps=dict(demand.planned),
        prompt_tokens=demand.prompt_tokens,
        output_tokens=demand.output_tokens,
        ttft_ms=row.ttft_ms,
        tpot_ms=row.tpot_ms,
        bid_cny_per_m_output_tokens=row.bid_cny_per_m_output_tokens,
        allowed_gpus=frozenset(row.allowed_gpus) if row.allowed_gpus else None,
        submitted_at_h=hours(row.submitted_at),
        bid_cny_per_m_input_tokens=row.bid_cny_per_m_input_tokens,
        bid_cny_per_m_cached_input_tokens=row.bid_cny_per_m_cached_input_tokens,
        cached_fraction=demand.cached_fraction,
        min_replicas=row.min_replicas,
        max_replicas=row.max_replicas,
    )


def _service_most_fen(svc: InferenceService, horizon_h: float) -> int:
    """The most one horizon of ``svc`` may cost: every planned request served, each at
    what its tokens are worth at the bids. The engine never bills a service above the
    value of the requests it serves, so the hold always covers the bill."""
    rps = sum(svc.demand_rps.values())
    worth = request_value_cny(svc) * rps * SECONDS_PER_HOUR * horizon_h
    return math.ceil(worth * 100) + _ROUNDING_MARGIN_FEN


def _occupy(st: ExchangeState, view: MarketView) -> None:
    """Mark the nodes that earlier rounds' work still holds."""
    for alloc in view.active:
        nodes = st.nodes.get(alloc.pool_id)
        if nodes is None:
            continue
        for index, gpus in alloc.nodes:
            if 0 <= index < len(nodes.free):
                nodes.free[index] = max(0, nodes.free[index] - gpus)


def _wallets(session: Session, tenants: set[str]) -> dict[str, int]:
    ids = {wallet(t): t for t in tenants}
    rows = session.scalars(select(LedgerAccount).where(LedgerAccount.id.in_(list(ids))))
    return {ids[a.id]: a.balance_fen for a in rows}


def _funds_reason(have_fen: int, most_fen: int, what: str) -> str:
    return (
        f"funds: wallet has {have_fen / 100:.2f} yuan free, this {what} may cost up to "
        f"{most_fen / 100:.2f} yuan at its bid"
    )
