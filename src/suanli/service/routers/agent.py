"""The agent API: site agents (``suanli agent``) register, heartbeat, lease and report.

Agents pull: every call goes from the site to the exchange, so a site behind NAT needs
no inbound connection. Sellers' scripts may lease and report by job id alone.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from suanli.service.agent_reports import report_allocation
from suanli.service.agent_session import heartbeat
from suanli.service.agents import register_agent
from suanli.service.deps import IdempotencyKey, Rt, Seller
from suanli.service.events import record_event
from suanli.service.idempotency import run_idempotent
from suanli.service.leases import LEASE_TTL_S, lease_work
from suanli.service.problems import PROBLEM_RESPONSES
from suanli.service.schemas.agent import (
    AgentRegister,
    AgentSessionOut,
    HeartbeatIn,
    HeartbeatOut,
    LeaseOut,
    LeaseRequest,
    ReportIn,
)
from suanli.service.schemas.work import JobOut, PlacementOut
from suanli.service.settlement import ImpossibleReport
from suanli.service.work_ops import report_job

__all__ = ["LEASE_TTL_S", "router"]

router = APIRouter(prefix="/v1/agent", tags=["agent"], responses=PROBLEM_RESPONSES)


@router.post("/register", response_model=AgentSessionOut)
def post_register(body: AgentRegister, rt: Rt, who: Seller) -> AgentSessionOut:
    """Register a site's agent: its pools (created, resized, offered at the given reserve),
    a new session (the previous one is fenced) and stop orders for work it must drop."""
    return rt.db.transact(
        lambda s: register_agent(s, body, who, rt.clock.now(), rt.settings, rt.catalog)
    )


@router.post("/heartbeat", response_model=HeartbeatOut)
def post_heartbeat(body: HeartbeatIn, rt: Rt, who: Seller) -> HeartbeatOut:
    """Keep the agent's session alive and learn what to stop; 409 ``fenced`` if the
    session ended (the site was taken down meanwhile, or another agent registered)."""
    return rt.db.transact(
        lambda s: heartbeat(s, body, who, rt.clock.now(), rt.settings, rt.serving_changes)
    )


@router.post("/leases", response_model=list[LeaseOut])
def post_lease(body: LeaseRequest, rt: Rt, who: Seller) -> list[LeaseOut]:
    """Placed work on the caller's pools that no agent has started: what to run, where."""
    return rt.db.transact(lambda s: lease_work(s, body, who, rt.clock.now()))


@router.post("/reports", response_model=JobOut | PlacementOut)
def post_report(
    body: ReportIn, request: Request, rt: Rt, who: Seller, key: IdempotencyKey = None
) -> Response:
    """Report work started, finished (exit code, delivered GPU time, log tail) or was
    preempted. With ``allocation_id`` and ``lease_token`` (agents) a report about work
    that has moved on is refused (409 ``stale-report``) and bills nothing; one that claims
    more GPU time than the exchange saw pass is refused (422 ``impossible-report``), bills
    nothing and is logged as a ``report-refused`` event."""

    def run(session: Session) -> tuple[int, JobOut | PlacementOut]:
        now = rt.clock.now()
        if body.allocation_id is not None:
            return 200, report_allocation(session, body, who, now, rt.serving_changes)
        row = report_job(session, body, who, now)
        session.flush()
        return 200, JobOut.model_validate(row)

    try:
        return run_idempotent(rt.db, who, key, "POST", request.url.path, body, rt.clock.now, run)
    except ImpossibleReport as exc:  # refused whole, but logged for operators and sellers
        event = exc.event
        rt.db.transact(lambda s: record_event(s, **event))
        raise
