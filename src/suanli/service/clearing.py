"""One clearing round, in one database transaction: rows → engine → rows.

1. Service replicas whose billing horizon has ended are settled and freed.
2. Pending jobs are locked; the pools on offer, their busy nodes and the voucher grants
   are read; an :class:`ExchangeState` is built from them.
3. ``advance`` fails pending jobs whose deadline passed (the engine's reason).
4. Admission: a buyer's pending work enters the round only while its wallet covers the
   most that work could cost at its bid, so every hold succeeds.
5. The exchange policy clears ``snapshot(now)``; ``apply(decision, start=False)`` takes
   concrete nodes. Each placement is held in the ledger and written with its reason.
6. The round and the prices that changed are recorded.

Steps 2–5 (reading and solving) run outside any write lock; step 1 and the writes of
step 5–6 run in one write transaction that re-checks each placement against the rows
(the job still pending, its site still up) — only the clearing leader takes GPUs, so a
placement that was feasible when solved is still feasible unless its job or site
changed meanwhile. A crash anywhere rolls the whole round back: no partial round is
ever visible.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from suanli.engine.lifecycle import WorkState, check_transition
from suanli.engine.records import Allocation, JobRecord, ServiceRecord
from suanli.engine.state import ExchangeState
from suanli.market.decision import Decision, JobPlacement, Payment
from suanli.market.policies import make_policy
from suanli.market.snapshot import (
    BatchJob,
    BuyerId,
    InferenceService,
    JobId,
    MarketRules,
    ServiceId,
)
from suanli.service.clock import hours
from suanli.service.events import record_event
from suanli.service.ledger import hold_entries, post, post_many, wallet
from suanli.service.market_view import MarketView, load_market_view, voucher_programs
from suanli.service.problems import InsufficientFunds
from suanli.service.runtime import Runtime
from suanli.service.settlement import settle_allocation
from suanli.service.tables import (
    AllocationRow,
    Event,
    JobRow,
    LedgerAccount,
    MarketPrice,
    RoundRow,
    ServiceRow,
    SiteRow,
    new_id,
)

__all__ = ["RoundSummary", "run_round"]

# Fen added to a job's most-possible cost: the engine rounds each payment leg to the fen.
_ROUNDING_MARGIN_FEN = 2


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


def run_round(rt: Runtime) -> RoundSummary:
    """Clear one round now and commit it; metrics are updated after the commit."""
    started = time.perf_counter()
    with rt.round_lock:
        now = rt.clock.now()
        with rt.db.read() as session:
            plan = _plan(session, rt, now)
        summary = (
            rt.db.transact(lambda s: _write(s, rt, plan, now)) if plan.writes else plan.summary
        )
    if rt.last_prices is not None:
        rt.last_prices.update(summary.stored_prices)  # only once the round is committed
    m = rt.metrics
    m.rounds.labels("cleared" if summary.round_id is not None else "idle").inc()
    m.round_seconds.observe(time.perf_counter() - started)
    if summary.round_id is not None:
        m.solve_seconds.observe(summary.solve_s)
    m.pending_jobs.set(summary.pending_jobs - summary.jobs_placed - summary.expired)
    m.pending_services.set(summary.pending_services - summary.services_placed)
    m.placed.labels("job").inc(summary.jobs_placed)
    m.placed.labels("service").inc(summary.services_placed)
    m.gpus_offered.set(summary.gpus_offered)
    m.gpus_allocated.set(summary.gpus_allocated)
    m.utilization.set(summary.gpus_allocated / summary.gpus_offered if summary.gpus_offered else 0)
    for pool_id, price in summary.prices.items():
        m.price.labels(pool_id).set(price)
    return summary


@dataclass
class _Plan:
    """What the round decided, before any row is written."""

    summary: RoundSummary
    view: MarketView
    expired: list[tuple[str, WorkState, str]] = field(default_factory=list)
    notes: dict[str, list[str]] = field(default_factory=dict)  # item id → reasons
    st: ExchangeState | None = None
    decision: Decision | None = None
    snapshot_sizes: tuple[int, int, int] = (0, 0, 0)
    horizons_over: bool = False

    @property
    def writes(self) -> bool:
        return bool(self.decision or self.expired or self.notes or self.horizons_over)


def _plan(session: Session, rt: Runtime, now: datetime) -> _Plan:
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
    view = load_market_view(session, now)
    # Replicas whose horizon ended are settled when the round is written: free already.
    live = [a for a in view.active if not _horizon_over(a, now)]
    horizons_over = len(live) != len(view.active)
    view = MarketView(view.sites, view.pools, view.speed, view.seller_of_pool, live)
    busy_services = {a.item_id for a in view.active if a.kind == "replica"}
    services = [s for s in services if s.id not in busy_services]
    summary = RoundSummary(None, len(pending), len(services))
    summary.gpus_offered = sum(p.gpu_count for p in view.pools)
    summary.gpus_allocated = sum(a.gpus for a in view.active)
    plan = _Plan(summary, view, horizons_over=horizons_over)
    if not pending and not services:
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
    tenants = {j.tenant_id for j in jobs_by_id.values()} | {s.tenant_id for s in services}
    funds = _wallets(session, tenants)
    for row in jobs_by_id.values():
        most = math.ceil(row.bid_cny_per_ref_gpu_hour * _remaining(row) * 100)
        most += _ROUNDING_MARGIN_FEN
        if funds.get(row.tenant_id, 0) >= most:
            funds[row.tenant_id] -= most
        else:
            del st.jobs[row.id]
            plan.notes[row.id] = [_funds_reason(funds.get(row.tenant_id, 0), most, "job")]
    for svc in services:
        most = _service_most_fen(svc, horizon_h)
        if funds.get(svc.tenant_id, 0) >= most:
            funds[svc.tenant_id] -= most
            st.services[svc.id] = ServiceRecord(service=_service_value(svc))
        else:
            plan.notes[svc.id] = [_funds_reason(funds.get(svc.tenant_id, 0), most, "service")]

    snapshot = st.snapshot(now_h)
    if not snapshot.jobs and not snapshot.services:
        return plan
    policy = make_policy("exchange", rt.ctx)
    t0 = time.perf_counter()
    decision = policy.clear(snapshot)
    summary.solve_s = time.perf_counter() - t0
    st.apply(decision, now_h, start=False)
    plan.st, plan.decision = st, decision
    plan.snapshot_sizes = (len(snapshot.pools), len(snapshot.jobs), len(snapshot.services))
    for u in decision.unplaced:
        plan.notes[u.item_id] = [str(r) for r in u.reasons]
    for so in decision.services:
        if not st.services[so.service_id].replicas:
            plan.notes[so.service_id] = [str(r) for rs in so.unserved.values() for r in rs]
    return plan


def _write(session: Session, rt: Runtime, plan: _Plan, now: datetime) -> RoundSummary:
    summary = replace(plan.summary, prices={}, stored_prices={})
    summary.jobs_placed = summary.services_placed = summary.gpus_placed = 0
    _end_service_horizons(session, now)
    st, decision = plan.st, plan.decision
    touched = [i for i, _, _ in plan.expired] + [i for i in plan.notes if i.startswith("job-")]
    if decision is not None:
        touched += [pl.job_id for pl in decision.jobs]
    rows = (
        {
            r.id: r
            for r in session.scalars(
                select(JobRow)
                .where(JobRow.id.in_(touched), JobRow.state == WorkState.PENDING.value)
                .order_by(JobRow.id)
                .with_for_update()
            )
        }
        if touched
        else {}
    )
    for item_id, to, reason in plan.expired:
        if item_id in rows:
            _move(session, rows[item_id], to, reason, now)
            rows[item_id].finished_at = now
    services = {
        s.id: s
        for s in session.scalars(
            select(ServiceRow).where(
                ServiceRow.id.in_(
                    [i for i in plan.notes if i.startswith("svc-")]
                    + ([so.service_id for so in decision.services] if decision else [])
                ),
                ServiceRow.state == "active",
            )
        )
    }
    for item_id, reasons in plan.notes.items():
        row = rows.get(item_id) or services.get(item_id)
        if row is not None:
            _note_many(row, reasons)
    if st is None or decision is None:
        return summary
    n_pools, n_jobs, n_services = plan.snapshot_sizes
    round_row = RoundRow(
        started_at=now,
        finished_at=rt.clock.now(),
        policy=decision.policy,
        pools=n_pools,
        pending_jobs=n_jobs,
        pending_services=n_services,
        jobs_placed=0,
        services_placed=0,
        gpus_placed=0,
        expired=summary.expired,
        welfare_cny_per_hour=decision.welfare_cny_per_hour,
        solve_ms=summary.solve_s * 1000,
        notes=list(decision.notes),
    )
    session.add(round_row)
    session.flush()
    summary.round_id = round_row.id
    up_sites = set(session.scalars(select(SiteRow.id).where(SiteRow.up.is_(True))))
    view = plan.view
    _write_jobs(session, st, decision, rows, view, up_sites, round_row.id, now, summary)
    _write_services(session, st, decision, services, view, up_sites, round_row.id, now, summary)
    round_row.jobs_placed = summary.jobs_placed
    round_row.services_placed = summary.services_placed
    round_row.gpus_placed = summary.gpus_placed
    summary.gpus_allocated += summary.gpus_placed
    _write_prices(session, rt, decision, round_row.id, now, summary)
    return summary


def _horizon_over(alloc: AllocationRow, now: datetime) -> bool:
    return alloc.kind == "replica" and alloc.placed_at + timedelta(hours=alloc.planned_h) <= now


# ----- reading --------------------------------------------------------------------------
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


def _service_value(row: ServiceRow) -> InferenceService:
    return InferenceService(
        id=ServiceId(row.id),
        buyer=BuyerId(row.tenant_id),
        model=row.model,
        demand_rps=dict(row.demand_rps),
        prompt_tokens=row.prompt_tokens,
        output_tokens=row.output_tokens,
        ttft_ms=row.ttft_ms,
        tpot_ms=row.tpot_ms,
        bid_cny_per_m_output_tokens=row.bid_cny_per_m_output_tokens,
        allowed_gpus=frozenset(row.allowed_gpus) if row.allowed_gpus else None,
        submitted_at_h=hours(row.submitted_at),
    )


def _service_most_fen(row: ServiceRow, horizon_h: float) -> int:
    tokens = sum(row.demand_rps.values()) * row.output_tokens * 3600.0 * horizon_h
    return math.ceil(row.bid_cny_per_m_output_tokens * tokens / 1e6 * 100) + _ROUNDING_MARGIN_FEN


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


def _note(row: JobRow | ServiceRow, reason: str) -> None:
    if row.last_reasons != [reason]:
        row.last_reasons = [reason]


# ----- writing --------------------------------------------------------------------------
def _move(session: Session, row: JobRow, to: WorkState, reason: str, now: datetime) -> None:
    record_event(
        session,
        at=now,
        subject_kind="job",
        subject_id=row.id,
        kind="transition",
        tenant_id=row.tenant_id,
        actor="clearing",
        from_state=row.state,
        to_state=to.value,
        reason=reason,
    )
    row.state = to.value
    row.reason = reason


def _allocation_row(
    a: Allocation, buyer: str, seller: str, round_id: int, now: datetime, why: str
) -> AllocationRow:
    return AllocationRow(
        id=new_id("alloc"),
        round_id=round_id,
        kind=a.kind,
        item_id=a.item_id,
        buyer_tenant_id=buyer,
        seller_tenant_id=seller,
        pool_id=a.pool_id,
        gpus=a.gpus,
        nodes=[list(n) for n in a.nodes],
        price_cny_per_gpu_hour=a.price_cny_per_gpu_hour,
        planned_h=a.planned_h,
        buyer_fen=a.payment.buyer_fen,
        voucher_fen=a.payment.voucher_fen,
        seller_fen=a.payment.seller_fen,
        fee_fen=a.payment.fee_fen,
        voucher_program_id=a.payment.voucher_id,
        active=True,
        why=why,
        placed_at=now,
    )


def _write_jobs(
    session: Session,
    st: ExchangeState,
    decision: Decision,
    rows: dict[str, JobRow],
    view: MarketView,
    up_sites: set[str],
    round_id: int,
    now: datetime,
    summary: RoundSummary,
) -> None:
    """Hold, allocate and move every placed job, in bulk (rounds may place thousands)."""
    todo: list[tuple[JobPlacement, JobRow, AllocationRow]] = []
    for pl in decision.jobs:
        row = rows.get(pl.job_id)
        if row is None:
            continue  # cancelled while the round was solving
        if st.pools[pl.pool_id].site_id not in up_sites:
            continue  # its site went down meanwhile: placed again next round
        alloc = st.jobs[pl.job_id].allocation
        assert alloc is not None
        seller = view.seller_of_pool[pl.pool_id]
        todo.append((pl, row, _allocation_row(alloc, row.tenant_id, seller, round_id, now, pl.why)))
    held = post_many(
        session,
        "hold",
        [(a.id, hold_entries(r.tenant_id, _planned(a))) for _, r, a in todo],
        now,
    )
    placed = [(pl, r, a) for (pl, r, a), ok in zip(todo, held, strict=True) if ok]
    for (_, row, _), ok in zip(todo, held, strict=True):
        if not ok:
            _note(row, "funds: the wallet could not cover the hold when the round was written")
    if not placed:
        return
    session.execute(insert(AllocationRow), [_row_values(a) for _, _, a in placed])
    session.execute(
        insert(Event),
        [
            {
                "at": now,
                "tenant_id": row.tenant_id,
                "actor": "clearing",
                "subject_kind": "job",
                "subject_id": row.id,
                "kind": "transition",
                "from_state": row.state,
                "to_state": WorkState.PLACED.value,
                "reason": pl.why,
                "data": None,
            }
            for pl, row, _ in placed
        ],
    )
    for pl, row, arow in placed:
        check_transition(row.id, WorkState(row.state), WorkState.PLACED)
        row.state = WorkState.PLACED.value
        row.reason = pl.why
        row.pool_id = pl.pool_id
        row.allocation_id = arow.id
        row.placed_at = now
        row.last_reasons = []
        summary.jobs_placed += 1
        summary.gpus_placed += pl.gpus


def _planned(a: AllocationRow) -> Payment:
    return Payment(a.buyer_fen, a.voucher_fen, a.seller_fen, a.fee_fen, a.voucher_program_id)


def _row_values(a: AllocationRow) -> dict[str, object]:
    return {c.key: getattr(a, c.key) for c in AllocationRow.__table__.columns}


def _note_many(row: JobRow | ServiceRow, reasons: list[str]) -> None:
    if row.last_reasons != reasons:
        row.last_reasons = reasons


def _write_services(
    session: Session,
    st: ExchangeState,
    decision: Decision,
    rows: dict[str, ServiceRow],
    view: MarketView,
    up_sites: set[str],
    round_id: int,
    now: datetime,
    summary: RoundSummary,
) -> None:
    for so in decision.services:
        row = rows.get(so.service_id)
        replicas = st.services[so.service_id].replicas
        if row is None or not replicas:
            continue  # stopped meanwhile, or nothing placed (reasons already noted)
        reasons = [str(r) for rs in so.unserved.values() for r in rs]
        if any(st.pools[a.pool_id].site_id not in up_sites for a in replicas):
            continue
        why = (
            f"{len(replicas)} replica(s) on "
            + ", ".join(sorted({a.pool_id for a in replicas}))
            + f"; serving {so.served_rps:.1f} of {so.demand_rps:.1f} req/s"
        )
        arows = [
            _allocation_row(a, row.tenant_id, view.seller_of_pool[a.pool_id], round_id, now, why)
            for a in replicas
        ]
        try:
            with session.begin_nested():
                for a, arow in zip(replicas, arows, strict=True):
                    post(session, "hold", hold_entries(row.tenant_id, a.payment), now, ref=arow.id)
                    session.add(arow)
        except InsufficientFunds as exc:
            _note(row, f"funds: {exc.detail}")
            continue
        record_event(
            session,
            at=now,
            subject_kind="service",
            subject_id=row.id,
            kind="placed",
            tenant_id=row.tenant_id,
            actor="clearing",
            reason=why,
            data={"replicas": len(replicas), "served_rps": so.served_rps},
        )
        row.reason = why
        row.served_rps = so.served_rps
        _note_many(row, reasons)
        summary.services_placed += 1
        summary.gpus_placed += sum(a.gpus for a in replicas)


def _write_prices(
    session: Session,
    rt: Runtime,
    decision: Decision,
    round_id: int,
    now: datetime,
    summary: RoundSummary,
) -> None:
    if rt.last_prices is None:
        rt.last_prices = _latest_prices(session)
    for p in decision.prices:
        price = p.price_cny_per_gpu_hour
        summary.prices[p.pool_id] = price
        last = rt.last_prices.get(p.pool_id)
        if last is not None and abs(last - price) < 1e-9 and p.gpus_sold == 0:
            continue
        summary.stored_prices[p.pool_id] = price
        session.add(
            MarketPrice(
                round_id=round_id,
                pool_id=p.pool_id,
                at=now,
                price_cny_per_gpu_hour=price,
                reserve_cny_per_gpu_hour=p.reserve_cny_per_gpu_hour,
                scarcity_rent_cny_per_gpu_hour=p.scarcity_rent_cny_per_gpu_hour,
                gpus_sold=p.gpus_sold,
                free_gpus_after=p.free_gpus_after,
            )
        )


def _latest_prices(session: Session) -> dict[str, float]:
    latest = select(func.max(MarketPrice.id)).group_by(MarketPrice.pool_id)
    rows = session.execute(
        select(MarketPrice.pool_id, MarketPrice.price_cny_per_gpu_hour).where(
            MarketPrice.id.in_(latest)
        )
    )
    return {pool_id: price for pool_id, price in rows}


def _end_service_horizons(session: Session, now: datetime) -> None:
    """Replicas whose billing horizon ended are paid in full and freed; their service is
    cleared again this round."""
    for alloc in session.scalars(
        select(AllocationRow)
        .where(AllocationRow.active.is_(True), AllocationRow.kind == "replica")
        .with_for_update()
    ):
        if alloc.placed_at + timedelta(hours=alloc.planned_h) <= now:
            settle_allocation(session, alloc, now, alloc.planned_h)
