"""Writing a planned clearing round: placements, holds, reasons and prices, in one
transaction. See :mod:`suanli.service.clearing` for the whole round.

A service placed whole gets this round's routes in place of its earlier ones. A
scale-up (a service with live replicas, entered for its residual demand, see
:mod:`suanli.service.scale_up`) only adds: its new replicas are held and written beside
the live ones, whose allocations, holds and routes stay as they are; the new routes are
added to those of the pools still serving it. A scale-up the round could not place
changes nothing but its reasons. The route rows are written by
:mod:`suanli.service.route_rows`, the prices by :mod:`suanli.service.round_prices`.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from suanli.engine.lifecycle import WorkState, check_transition
from suanli.engine.records import Allocation
from suanli.engine.state import ExchangeState
from suanli.market.decision import Decision, JobPlacement, Payment, ServiceOutcome
from suanli.service.events import record_event
from suanli.service.ledger import hold_entries, post, post_many
from suanli.service.market_view import MarketView
from suanli.service.problems import InsufficientFunds
from suanli.service.round_plan import RoundPlan, RoundSummary
from suanli.service.round_prices import write_prices
from suanli.service.route_rows import add_routes, replace_routes
from suanli.service.runtime import Runtime
from suanli.service.scale_up import ScaleUp, scale_up_reasons
from suanli.service.service_demand import dump_estimates, load_estimates
from suanli.service.settlement import settle_allocation
from suanli.service.tables import (
    AllocationRow,
    Event,
    JobRow,
    RoundRow,
    ServiceRow,
    SiteRow,
    new_id,
)

__all__ = ["write_round"]


def write_round(session: Session, rt: Runtime, plan: RoundPlan, now: datetime) -> RoundSummary:
    summary = replace(plan.summary, prices={}, stored_prices={})
    summary.jobs_placed = summary.services_placed = summary.gpus_placed = 0
    _end_service_horizons(session, now)
    _write_demand(session, plan)
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
    _write_services(session, plan, services, up_sites, round_row.id, now, summary)
    round_row.jobs_placed = summary.jobs_placed
    round_row.services_placed = summary.services_placed + summary.services_scaled
    round_row.gpus_placed = summary.gpus_placed
    summary.gpus_allocated += summary.gpus_placed
    write_prices(session, rt, decision, round_row.id, now, summary)
    return summary


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


def _write_demand(session: Session, plan: RoundPlan) -> None:
    """Store each re-planned service's plan and the estimates' hysteresis state.

    Gateways' reports fold new measurements into the same estimates meanwhile: only the
    plan's own fields (``planned_rps``, ``low_since_s``) are written over what the row
    holds now, under its lock, so no measurement is lost."""
    if not plan.demand:
        return
    for row in session.scalars(
        select(ServiceRow)
        .where(ServiceRow.id.in_(sorted(plan.demand)), ServiceRow.state == "active")
        .order_by(ServiceRow.id)
        .with_for_update()
    ):
        dp = plan.demand[row.id]
        current = load_estimates(row.demand_estimates)
        for city, est in dp.estimates.items():
            now_est = current.get(city)
            current[city] = (
                est
                if now_est is None
                else replace(now_est, planned_rps=est.planned_rps, low_since_s=est.low_since_s)
            )
        row.demand_estimates = dump_estimates(current) if current else None
        row.planned_demand_rps = dict(dp.planned)


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


def _note(row: JobRow | ServiceRow, reason: str) -> None:
    if row.last_reasons != [reason]:
        row.last_reasons = [reason]


def _note_many(row: JobRow | ServiceRow, reasons: list[str]) -> None:
    if row.last_reasons != reasons:
        row.last_reasons = reasons


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


def _planned(a: AllocationRow) -> Payment:
    return Payment(a.buyer_fen, a.voucher_fen, a.seller_fen, a.fee_fen, a.voucher_program_id)


def _row_values(a: AllocationRow) -> dict[str, object]:
    return {c.key: getattr(a, c.key) for c in AllocationRow.__table__.columns}


def _write_services(
    session: Session,
    plan: RoundPlan,
    rows: dict[str, ServiceRow],
    up_sites: set[str],
    round_id: int,
    now: datetime,
    summary: RoundSummary,
) -> None:
    st, decision = plan.st, plan.decision
    assert st is not None and decision is not None
    for so in decision.services:
        row = rows.get(so.service_id)
        if row is None:
            continue  # stopped meanwhile
        up = plan.scale_ups.get(so.service_id)
        replicas = st.services[so.service_id].replicas
        # A site that went down meanwhile: placed again next round.
        sites_up = all(st.pools[a.pool_id].site_id in up_sites for a in replicas)
        placed = (
            bool(replicas)
            and sites_up
            and _place_service(session, so, row, replicas, plan.view, round_id, now, up)
        )
        if up is None:
            # The routing plan gateways follow: this round's, or none if nothing was placed.
            replace_routes(session, row.id, so.routes if placed else (), round_id)
        elif placed:
            add_routes(session, row.id, so.routes, up, round_id)
        if not placed:
            continue
        if up is None:
            summary.services_placed += 1
        else:
            summary.services_scaled += 1
        summary.gpus_placed += sum(a.gpus for a in replicas)


def _place_service(
    session: Session,
    so: ServiceOutcome,
    row: ServiceRow,
    replicas: list[Allocation],
    view: MarketView,
    round_id: int,
    now: datetime,
    up: ScaleUp | None,
) -> bool:
    """Hold and write one service's replicas; False (with the reason noted) if the
    wallet could not cover the hold. A scale-up's replicas join the live ones: the
    service serves what those cover plus what the new ones serve."""
    reasons = [str(r) for rs in so.unserved.values() for r in rs]
    pools = ", ".join(sorted({a.pool_id for a in replicas}))
    if up is None:
        served = so.served_rps
        why = f"{len(replicas)} replica(s) on {pools}; serving {served:.1f} of {so.demand_rps:.1f}"
    else:
        served = up.covered_rps + so.served_rps
        reasons = scale_up_reasons(reasons, up)
        why = (
            f"{len(replicas)} replica(s) added on {pools} beside {up.live_replicas} live; "
            f"serving {served:.1f} of {up.planned_rps:.1f}"
        )
    why += " req/s"
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
        funds = [f"funds: {exc.detail}"]
        _note_many(row, funds if up is None else scale_up_reasons(funds, up))
        return False
    data: dict[str, object] = {"replicas": len(replicas), "served_rps": served}
    if up is not None:
        data["live_replicas"] = up.live_replicas
    record_event(
        session,
        at=now,
        subject_kind="service",
        subject_id=row.id,
        kind="placed",
        tenant_id=row.tenant_id,
        actor="clearing",
        reason=why,
        data=data,
    )
    row.reason = why
    row.served_rps = served
    _note_many(row, reasons)
    return True
