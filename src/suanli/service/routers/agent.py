"""The agent API (until site agents exist, sellers' scripts and tests drive it)."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from suanli.service.deps import IdempotencyKey, Rt, Seller
from suanli.service.idempotency import run_idempotent
from suanli.service.problems import PROBLEM_RESPONSES
from suanli.service.schemas.agent import LeaseOut, LeaseRequest, ReportIn
from suanli.service.schemas.work import JobOut
from suanli.service.tables import AllocationRow, JobRow, PoolRow
from suanli.service.work_ops import report_job

__all__ = ["LEASE_TTL_S", "router"]

router = APIRouter(prefix="/v1/agent", tags=["agent"], responses=PROBLEM_RESPONSES)

# A lease not followed by a "running" report within this time is offered again.
LEASE_TTL_S = 300.0


@router.post("/leases", response_model=list[LeaseOut])
def post_lease(body: LeaseRequest, rt: Rt, who: Seller) -> list[LeaseOut]:
    """Placed jobs on the caller's pools that no agent has started: what to run, where."""

    def run(session: Session) -> list[LeaseOut]:
        now = rt.clock.now()
        q = (
            select(AllocationRow, JobRow, PoolRow)
            .join(JobRow, JobRow.id == AllocationRow.item_id)
            .join(PoolRow, PoolRow.id == AllocationRow.pool_id)
            .where(
                AllocationRow.active.is_(True),
                AllocationRow.kind == "job",
                AllocationRow.started_at.is_(None),
                or_(
                    AllocationRow.leased_at.is_(None),
                    AllocationRow.leased_at < now - timedelta(seconds=LEASE_TTL_S),
                ),
            )
            .order_by(AllocationRow.placed_at, AllocationRow.id)
            .limit(body.limit)
            .with_for_update(of=AllocationRow)
        )
        if not who.is_operator:
            q = q.where(AllocationRow.seller_tenant_id == who.tenant_id)
        if body.site_id:
            q = q.where(PoolRow.site_id == body.site_id)
        out = []
        for alloc, job, pool in session.execute(q):
            alloc.leased_at = now
            out.append(
                LeaseOut(
                    allocation_id=alloc.id,
                    job_id=job.id,
                    pool_id=pool.id,
                    site_id=pool.site_id,
                    gpus=alloc.gpus,
                    nodes=alloc.nodes,
                    image=job.image,
                    command=job.command,
                    planned_h=alloc.planned_h,
                    checkpoint_every_h=job.checkpoint_every_h,
                )
            )
        return out

    return rt.db.transact(run)


@router.post("/reports", response_model=JobOut)
def post_report(
    body: ReportIn, request: Request, rt: Rt, who: Seller, key: IdempotencyKey = None
) -> Response:
    """Report a job started, finished (exit code, GPU-hours used) or was preempted."""

    def run(session: Session) -> tuple[int, JobOut]:
        row = report_job(session, body, who, rt.clock.now())
        session.flush()
        return 200, JobOut.model_validate(row)

    return run_idempotent(rt.db, who, key, "POST", request.url.path, body, rt.clock.now, run)
