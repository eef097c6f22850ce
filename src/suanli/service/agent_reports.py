"""Agents' reports about one allocation, fenced by its lease token.

A report is applied only while its allocation is active and its token is the current
lease's; anything else (the work moved away after the site was taken down, the buyer
cancelled it, the allocation was leased again) is refused as stale and bills nothing.
Retries of an applied report carry the same Idempotency-Key and get the stored answer,
so each report is applied exactly once.
"""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from suanli.service.agent_session import StaleReport, bump_after_commit, ended_why
from suanli.service.auth import Principal
from suanli.service.events import record_event
from suanli.service.notify import Changes
from suanli.service.problems import NotFound, Unprocessable
from suanli.service.schemas.agent import ReportIn
from suanli.service.schemas.work import JobOut, PlacementOut
from suanli.service.settlement import reported_hours, settle_allocation
from suanli.service.tables import AllocationRow, JobRow, PoolRow
from suanli.service.work_ops import apply_job_report

__all__ = ["LOG_TAIL_CHARS", "report_allocation"]

# The end of a job's log kept in its event (the whole tail stays on the site).
LOG_TAIL_CHARS = 2000


def report_allocation(
    session: Session,
    report: ReportIn,
    who: Principal,
    now: datetime,
    changes: Changes | None = None,
) -> JobOut | PlacementOut:
    """Apply ``report`` to its allocation: the job's new state, or the replica's (which
    bumps ``changes`` once committed: a replica started or ended changes gateways' state)."""
    assert report.allocation_id is not None
    alloc = session.get(AllocationRow, report.allocation_id)
    if alloc is None or (not who.is_operator and alloc.seller_tenant_id != who.tenant_id):
        raise NotFound(f"no allocation {report.allocation_id!r} on your pools")
    if report.job_id is not None and (alloc.kind != "job" or alloc.item_id != report.job_id):
        raise Unprocessable(f"allocation {alloc.id} does not hold job {report.job_id}")
    row = None
    if alloc.kind == "job":
        # Lock order of every job change: the job's row first, then its allocation.
        row = session.scalars(
            select(JobRow).where(JobRow.id == alloc.item_id).with_for_update()
        ).one()
    session.refresh(alloc, with_for_update=True)
    _check_fresh(session, alloc, report)
    pool = session.get(PoolRow, alloc.pool_id)
    data: dict[str, object] = {
        "allocation_id": alloc.id,
        "pool_id": alloc.pool_id,
        "site_id": pool.site_id if pool else None,
    }
    if report.backend_job_id:
        alloc.backend_job_id = report.backend_job_id
    if alloc.backend_job_id:
        data["backend_job_id"] = alloc.backend_job_id
    if report.log_tail:
        data["log_tail"] = report.log_tail[-LOG_TAIL_CHARS:]
    if report.usage is not None:
        data["usage"] = report.usage.model_dump()
    if row is not None:
        apply_job_report(session, row, alloc, report, now, who.account_id, data)
        session.flush()
        return JobOut.model_validate(row)
    bump_after_commit(session, changes)
    return _apply_replica_report(session, alloc, report, now, who.account_id, data)


def _check_fresh(session: Session, alloc: AllocationRow, report: ReportIn) -> None:
    if report.lease_token is not None and not (
        alloc.lease_token and secrets.compare_digest(alloc.lease_token, report.lease_token)
    ):
        raise StaleReport(
            f"allocation {alloc.id} was leased again since this lease: the report comes "
            "from an agent that no longer holds it and is ignored (nothing billed)"
        )
    if not alloc.active:
        ended = alloc.released_at.isoformat() if alloc.released_at else "earlier"
        raise StaleReport(
            f"allocation {alloc.id} ended at {ended} ({ended_why(session, alloc)}): "
            "the report is ignored (nothing billed)"
        )


def _apply_replica_report(
    session: Session,
    alloc: AllocationRow,
    report: ReportIn,
    now: datetime,
    actor: str,
    data: dict[str, object],
) -> PlacementOut:
    if report.state == "running":
        if alloc.started_at is None:
            alloc.started_at = now
        if report.endpoint:
            alloc.endpoint = report.endpoint
        alloc.health = alloc.health or "starting"
        kind = "replica-running"
        reason = report.reason or f"replica {alloc.id} running at {alloc.endpoint or '?'}"
    else:
        started = alloc.started_at or alloc.placed_at
        delivered_h = (
            reported_hours(alloc, report.gpu_hours, now, state=report.state, actor=actor)
            if report.gpu_hours is not None
            else (now - started).total_seconds() / 3600.0
        )
        usage = settle_allocation(session, alloc, now, delivered_h, exit_code=report.exit_code)
        if report.usage is not None:
            usage.details = {"backend_usage": report.usage.model_dump()}
        data["gpu_hours"] = usage.gpu_hours
        code = "" if report.exit_code is None else f" (exit code {report.exit_code})"
        kind = "replica-ended"
        reason = (report.reason or f"replica {report.state} on the site") + code
        alloc.health = None
    record_event(
        session,
        at=now,
        subject_kind="service",
        subject_id=alloc.item_id,
        kind=kind,
        tenant_id=alloc.buyer_tenant_id,
        actor=actor,
        to_state=report.state,
        reason=reason,
        data=data,
    )
    pool = session.get(PoolRow, alloc.pool_id)
    return PlacementOut(
        allocation_id=alloc.id,
        pool_id=alloc.pool_id,
        site_id=pool.site_id if pool else None,
        gpu=pool.gpu if pool else None,
        gpus=alloc.gpus,
        price_cny_per_gpu_hour=alloc.price_cny_per_gpu_hour,
        planned_h=alloc.planned_h,
        held_buyer_fen=alloc.buyer_fen,
        held_voucher_fen=alloc.voucher_fen,
        voucher_program_id=alloc.voucher_program_id,
        why=alloc.why,
        active=alloc.active,
        endpoint=alloc.endpoint,
        health=alloc.health,
    )
