"""Changes to placed work outside the clearing round: cancel, agent reports, outages.

Each function runs inside the caller's write transaction, locks the work's row first
(then ledger rows, in id order), checks the lifecycle (``check_transition``), settles the
allocation for the time it delivered and logs the transition with its reason.
"""

from __future__ import annotations

import math
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from suanli.engine.lifecycle import WorkState, check_transition
from suanli.service.auth import Principal
from suanli.service.events import record_event
from suanli.service.problems import Conflict, NotFound
from suanli.service.schemas.agent import ReportIn
from suanli.service.schemas.work import ServiceUpdate
from suanli.service.settlement import reported_hours, settle_allocation
from suanli.service.tables import AllocationRow, JobRow, PoolRow, ServiceRow, SiteRow

__all__ = [
    "apply_job_report",
    "cancel_job",
    "lock_job",
    "preempt_job",
    "report_job",
    "set_site_up",
    "stop_service",
    "update_service",
]


def lock_job(session: Session, job_id: str, principal: Principal) -> JobRow:
    """The buyer's (or, for operators, any) job, row-locked; NotFound otherwise."""
    row = session.scalars(select(JobRow).where(JobRow.id == job_id).with_for_update()).first()
    if row is None or (not principal.is_operator and row.tenant_id != principal.tenant_id):
        raise NotFound(f"no job {job_id!r}")
    return row


def _active_allocation(session: Session, row: JobRow) -> AllocationRow | None:
    if row.allocation_id is None:
        return None
    alloc = session.get(AllocationRow, row.allocation_id, with_for_update=True)
    return alloc if alloc is not None and alloc.active else None


def _ran_h(alloc: AllocationRow, now: datetime) -> float:
    if alloc.started_at is None:
        return 0.0
    return max(0.0, (now - alloc.started_at).total_seconds() / 3600.0)


def _transition(
    session: Session,
    row: JobRow,
    to: WorkState,
    reason: str,
    now: datetime,
    actor: str,
    data: dict[str, object] | None = None,
) -> None:
    check_transition(row.id, WorkState(row.state), to)
    record_event(
        session,
        at=now,
        subject_kind="job",
        subject_id=row.id,
        kind="transition",
        tenant_id=row.tenant_id,
        actor=actor,
        from_state=row.state,
        to_state=to.value,
        reason=reason,
        data=data,
    )
    row.state = to.value
    row.reason = reason


def cancel_job(session: Session, row: JobRow, now: datetime, actor: str) -> None:
    """Cancel: bill the GPU time already delivered, release the rest of the hold."""
    check_transition(row.id, WorkState(row.state), WorkState.CANCELLED)
    alloc = _active_allocation(session, row)
    if alloc is not None:
        settle_allocation(session, alloc, now, _ran_h(alloc, now))
    _transition(session, row, WorkState.CANCELLED, "cancelled by buyer", now, actor)
    row.finished_at = now


def preempt_job(
    session: Session,
    row: JobRow,
    alloc: AllocationRow | None,
    now: datetime,
    reason: str,
    actor: str,
    *,
    delivered_h: float | None = None,
    delivered_until: datetime | None = None,
    data: dict[str, object] | None = None,
) -> None:
    """Preempted: keep progress up to the last checkpoint, bill delivered time, and wait
    for the next round (``preempted → pending``), as the engine's ``fail_site`` does.

    Delivered time is ``delivered_h`` when the site measured it, else the time from the
    start to ``delivered_until`` (default ``now``): a site that went silent is billed up
    to the last time it was heard from.
    """
    check_transition(row.id, WorkState(row.state), WorkState.PREEMPTED)
    if alloc is not None:
        ran_h = _ran_h(alloc, delivered_until or now) if delivered_h is None else delivered_h
        if row.checkpoint_every_h:
            kept_h = math.floor(ran_h / row.checkpoint_every_h) * row.checkpoint_every_h
        else:
            kept_h = 0.0
        speed = session.get(PoolRow, alloc.pool_id)
        row.done_ref_gpu_hours = min(
            row.work_ref_gpu_hours,
            row.done_ref_gpu_hours + kept_h * alloc.gpus * (speed.speed if speed else 1.0),
        )
        usage = settle_allocation(session, alloc, now, ran_h)
        data = {**(data or {}), "gpu_hours": usage.gpu_hours}
    _transition(session, row, WorkState.PREEMPTED, reason, now, actor, data=data)
    _transition(session, row, WorkState.PENDING, "waiting to be placed again", now, actor)
    row.allocation_id = None
    row.placed_at = None
    row.started_at = None


def report_job(session: Session, report: ReportIn, principal: Principal, now: datetime) -> JobRow:
    """Apply a report that names only the job (scripts): to its current allocation."""
    assert report.job_id is not None
    row = session.scalars(
        select(JobRow).where(JobRow.id == report.job_id).with_for_update()
    ).first()
    if row is None:
        raise NotFound(f"no job {report.job_id!r}")
    alloc = _active_allocation(session, row)
    if alloc is None:
        raise Conflict(f"job {row.id} holds no GPUs (it is {row.state}); nothing to report")
    if not principal.is_operator and alloc.seller_tenant_id != principal.tenant_id:
        raise NotFound(f"no job {report.job_id!r} on your pools")
    return apply_job_report(session, row, alloc, report, now, principal.account_id)


def apply_job_report(
    session: Session,
    row: JobRow,
    alloc: AllocationRow,
    report: ReportIn,
    now: datetime,
    actor: str,
    data: dict[str, object] | None = None,
) -> JobRow:
    """Move the job as the site reports and settle what it delivered: the site's own
    GPU-hours when it gives them (capped at the plan and at the time the exchange saw
    pass; ImpossibleReport, 422, past that and its tolerance), else the time since it
    started.
    ``data`` (where it ran, the backend's job id, the log tail) goes into the event."""
    to = WorkState(report.state)
    if to is WorkState.RUNNING:
        _transition(session, row, to, report.reason or "started", now, actor, data=data)
        alloc.started_at = now
        row.started_at = now
        return row
    delivered_h = (
        None
        if report.gpu_hours is None
        else reported_hours(alloc, report.gpu_hours, now, state=report.state, actor=actor)
    )
    if to is WorkState.PREEMPTED:
        reason = report.reason or "preempted by the site"
        preempt_job(session, row, alloc, now, reason, actor, delivered_h=delivered_h, data=data)
        return row
    check_transition(row.id, WorkState(row.state), to)
    usage = settle_allocation(
        session,
        alloc,
        now,
        _ran_h(alloc, now) if delivered_h is None else delivered_h,
        exit_code=report.exit_code,
    )
    if report.usage is not None:
        usage.details = {"backend_usage": report.usage.model_dump()}
    if to is WorkState.SUCCEEDED:
        reason = report.reason or "work done"
        row.done_ref_gpu_hours = row.work_ref_gpu_hours
    else:
        code = "" if report.exit_code is None else f" (exit code {report.exit_code})"
        reason = (report.reason or "failed on the site") + code
    _transition(
        session,
        row,
        to,
        reason,
        now,
        actor,
        data={
            **(data or {}),
            "gpu_hours": usage.gpu_hours,
            "charged_fen": usage.buyer_fen + usage.voucher_fen,
        },
    )
    row.exit_code = report.exit_code
    row.finished_at = now
    return row


def stop_service(session: Session, row: ServiceRow, now: datetime, actor: str) -> None:
    if row.state != "active":
        raise Conflict(f"service {row.id} is already {row.state}")
    for alloc in session.scalars(
        select(AllocationRow)
        .where(AllocationRow.item_id == row.id, AllocationRow.active.is_(True))
        .with_for_update()
    ):
        delivered_h = (now - alloc.placed_at).total_seconds() / 3600.0
        settle_allocation(session, alloc, now, delivered_h)
    record_event(
        session,
        at=now,
        subject_kind="service",
        subject_id=row.id,
        kind="stopped",
        tenant_id=row.tenant_id,
        actor=actor,
        from_state="active",
        to_state="stopped",
        reason="stopped by buyer",
    )
    row.state = "stopped"
    row.reason = "stopped by buyer"
    row.served_rps = 0.0
    row.stopped_at = now


def update_service(
    session: Session,
    row: ServiceRow,
    body: ServiceUpdate,
    demand: dict[str, float] | None,
    now: datetime,
    actor: str,
) -> None:
    """Apply an owner's change (``demand``: the body's demand with catalogue city names)
    and log what changed, old and new; rounds read the row afresh, so the next one that
    clears the service plans with it."""
    if row.state != "active":
        raise Conflict(f"service {row.id} is {row.state}: a stopped service cannot be changed")
    new: dict[str, object] = {}
    if demand is not None:
        new["demand_rps"] = demand
    if body.tokens is not None:
        new["prompt_tokens"] = body.tokens.prompt
        new["output_tokens"] = body.tokens.output
        new["cached_fraction"] = body.tokens.cached_fraction
    if body.slo is not None:
        new["ttft_ms"], new["tpot_ms"] = body.slo.ttft_ms, body.slo.tpot_ms
    for bid in (
        "bid_cny_per_m_output_tokens",
        "bid_cny_per_m_input_tokens",
        "bid_cny_per_m_cached_input_tokens",
    ):
        if getattr(body, bid) is not None:
            new[bid] = getattr(body, bid)
    if body.replicas is not None:
        new["min_replicas"], new["max_replicas"] = body.replicas.min, body.replicas.max
    changed = {k: [getattr(row, k), v] for k, v in new.items() if getattr(row, k) != v}
    for k, (_, v) in changed.items():
        setattr(row, k, v)
    record_event(
        session,
        at=now,
        subject_kind="service",
        subject_id=row.id,
        kind="updated",
        tenant_id=row.tenant_id,
        actor=actor,
        reason="updated by its owner: " + (", ".join(sorted(changed)) or "nothing changed"),
        data={"changed": changed},
    )


def set_site_up(
    session: Session,
    site: SiteRow,
    up: bool,
    reason: str,
    now: datetime,
    actor: str,
    *,
    delivered_until: datetime | None = None,
) -> int:
    """Take a site down (its work is preempted, replicas freed) or bring it back.

    Work is billed up to ``delivered_until`` (default ``now``). Returns how many
    allocations were ended.
    """
    ended = 0
    until = min(now, delivered_until) if delivered_until is not None else now
    if site.up and not up:
        pools = list(session.scalars(select(PoolRow.id).where(PoolRow.site_id == site.id)))
        allocs = list(
            session.scalars(
                select(AllocationRow)
                .where(AllocationRow.active.is_(True), AllocationRow.pool_id.in_(pools))
                .order_by(AllocationRow.id)
            )
        )
        for alloc in allocs:
            if alloc.kind == "job":
                job = session.scalars(
                    select(JobRow).where(JobRow.id == alloc.item_id).with_for_update()
                ).one()
                preempt_job(
                    session,
                    job,
                    alloc,
                    now,
                    f"site {site.id} down: {reason}",
                    actor,
                    delivered_until=until,
                )
            else:
                delivered_h = max(0.0, (until - alloc.placed_at).total_seconds() / 3600.0)
                settle_allocation(session, alloc, now, delivered_h)
            ended += 1
    if site.up != up:
        record_event(
            session,
            at=now,
            subject_kind="site",
            subject_id=site.id,
            kind="up" if up else "down",
            tenant_id=site.tenant_id,
            actor=actor,
            reason=reason,
            data={"allocations_ended": ended},
        )
    site.up = up
    return ended
