"""Site agents' sessions on the exchange's side: heartbeats, stop orders, the sweep.

A registration (``agents.register_agent``) opens a *session* for a site; heartbeats and
leases carry it. ``heartbeat`` proves it alive, stores replicas' health and answers with
stop orders (work cancelled by its buyer, moved away, or whose replica horizon ended);
work leased to the site more than a heartbeat interval ago that never started and that
the agent does not hold is offered again (the lease's answer never reached the agent:
the exchange died before sending it).
``sweep_silent_sites`` takes down a site whose agent has not called for the heartbeat
timeout: its session ends (the agent is *fenced*: whatever it says later is refused) and
its work is preempted — billed up to the last heartbeat — for the next round to place
again elsewhere.

Each function runs inside the caller's write transaction.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from sqlalchemy import event, select
from sqlalchemy.orm import Session

from suanli.service.auth import Principal
from suanli.service.events import record_event
from suanli.service.notify import Changes
from suanli.service.problems import Conflict, NotFound
from suanli.service.schemas.agent import HeartbeatIn, HeartbeatOut, HeldLease, StopOrder
from suanli.service.settings import ServiceSettings
from suanli.service.tables import AllocationRow, JobRow, PoolRow, ServiceRow, SiteRow
from suanli.service.work_ops import set_site_up

__all__ = [
    "ONLINE",
    "SILENT",
    "Fenced",
    "StaleReport",
    "bump_after_commit",
    "check_session",
    "ended_why",
    "heartbeat",
    "new_token",
    "own_site",
    "reoffer_unheld",
    "stop_orders",
    "sweep_silent_sites",
]

ONLINE = "online"
SILENT = "silent"
ACTOR = "agent-watch"
_CHUNK = 500  # ids per IN (...) query


class Fenced(Conflict):
    """The agent's session is over: it must register again before anything else."""

    slug, title = "fenced", "Agent session ended"


class StaleReport(Conflict):
    """A report about an allocation that ended or was leased again: nothing is applied."""

    slug, title = "stale-report", "Stale report"


def new_token() -> str:
    """A session or lease token (128 random bits)."""
    return secrets.token_urlsafe(16)


def own_site(session: Session, site_id: str, who: Principal) -> SiteRow:
    site = session.get(SiteRow, site_id, with_for_update=True)
    if site is None or (not who.is_operator and site.tenant_id != who.tenant_id):
        raise NotFound(f"no site {site_id!r} of yours")
    return site


def bump_after_commit(session: Session, changes: Changes | None) -> None:
    """Wake gateways' state polls once this transaction commits (not before: a poll woken
    early would read the old rows and wait again)."""
    if changes is not None:
        event.listen(session, "after_commit", lambda _s: changes.bump(), once=True)


def heartbeat(
    session: Session,
    body: HeartbeatIn,
    who: Principal,
    now: datetime,
    settings: ServiceSettings,
    changes: Changes | None = None,
) -> HeartbeatOut:
    """Keep the session alive; store replica health; say what the agent must stop.
    A replica whose health or endpoint changed bumps ``changes`` (gateways route by them)."""
    site = own_site(session, body.site_id, who)
    check_session(site, body.session)
    site.agent_seen_at = now
    stop = stop_orders(session, site, body.held)
    leased_before = now - timedelta(seconds=settings.agent_heartbeat_interval_s)
    reoffer_unheld(session, site, body.held, leased_before)
    for rep in body.replicas:
        alloc = session.get(AllocationRow, rep.allocation_id)
        if alloc is None or alloc.kind != "replica" or not alloc.active:
            continue
        if alloc.health != rep.health:
            record_event(
                session,
                at=now,
                subject_kind="service",
                subject_id=alloc.item_id,
                kind="replica-health",
                tenant_id=alloc.buyer_tenant_id,
                actor=who.account_id,
                from_state=alloc.health,
                to_state=rep.health,
                reason=f"replica {alloc.id} at {rep.endpoint or alloc.endpoint}: {rep.health}",
            )
        if alloc.health != rep.health or (rep.endpoint and alloc.endpoint != rep.endpoint):
            bump_after_commit(session, changes)
        alloc.health, alloc.health_at = rep.health, now
        if rep.endpoint:
            alloc.endpoint = rep.endpoint
    return HeartbeatOut(
        site_up=site.up,
        stop=stop,
        heartbeat_interval_s=settings.agent_heartbeat_interval_s,
        heartbeat_timeout_s=settings.agent_heartbeat_timeout_s,
    )


def check_session(site: SiteRow, session_token: str) -> None:
    """Fenced unless ``session_token`` is the site's current session."""
    if site.agent_session is None:
        raise Fenced(
            f"site {site.id} has no agent session (it was taken down after its agent went "
            "silent, or no agent registered): register again"
        )
    if not secrets.compare_digest(site.agent_session, session_token):
        raise Fenced(f"another agent registered for site {site.id} since: register again")


def stop_orders(session: Session, site: SiteRow, held: Sequence[HeldLease]) -> list[StopOrder]:
    """What the agent holds but must stop: ended, moved away, or leased again since.

    ``handover`` marks a replica whose placement only reached its billing horizon while
    its service and site carry on: the service's next placement on the same pool may take
    the running replica over instead of starting another.
    """
    if not held:
        return []
    allocs = _allocations(session, [h.allocation_id for h in held])
    pools = set(session.scalars(select(PoolRow.id).where(PoolRow.site_id == site.id)))
    out: list[StopOrder] = []
    for h in held:
        alloc = allocs.get(h.allocation_id)
        if alloc is None or alloc.pool_id not in pools:
            out.append(StopOrder(allocation_id=h.allocation_id, reason="not placed on this site"))
        elif not alloc.active:
            out.append(
                StopOrder(
                    allocation_id=alloc.id,
                    reason=ended_why(session, alloc),
                    handover=site.up and _horizon_ended(session, alloc),
                )
            )
        elif alloc.lease_token != h.lease_token:
            out.append(
                StopOrder(allocation_id=alloc.id, reason="leased again since: this lease is over")
            )
    return out


def reoffer_unheld(
    session: Session, site: SiteRow, held: Sequence[HeldLease], leased_before: datetime
) -> int:
    """Offer again the site's work leased before ``leased_before`` that never started and
    that the agent does not hold (it never got the lease). An agent holds every lease it
    was given until it has said how it ended, so nothing it runs is offered twice.
    Returns how many."""
    claimed = {h.allocation_id for h in held}
    pools = select(PoolRow.id).where(PoolRow.site_id == site.id)
    lost = [
        alloc
        for alloc in session.scalars(
            select(AllocationRow)
            .where(
                AllocationRow.active.is_(True),
                AllocationRow.pool_id.in_(pools),
                AllocationRow.started_at.is_(None),
                AllocationRow.leased_at < leased_before,
            )
            .with_for_update()
        )
        if alloc.id not in claimed
    ]
    for alloc in lost:
        alloc.leased_at, alloc.lease_token = None, None
    return len(lost)


def _horizon_ended(session: Session, alloc: AllocationRow) -> bool:
    if alloc.kind != "replica" or alloc.released_at is None:
        return False
    svc = session.get(ServiceRow, alloc.item_id)
    horizon = alloc.placed_at + timedelta(hours=alloc.planned_h)
    return svc is not None and svc.state == "active" and alloc.released_at >= horizon


def _allocations(session: Session, ids: Iterable[str]) -> dict[str, AllocationRow]:
    wanted = sorted(set(ids))
    out: dict[str, AllocationRow] = {}
    for i in range(0, len(wanted), _CHUNK):
        chunk = wanted[i : i + _CHUNK]
        out.update(
            (a.id, a)
            for a in session.scalars(select(AllocationRow).where(AllocationRow.id.in_(chunk)))
        )
    return out


def ended_why(session: Session, alloc: AllocationRow) -> str:
    """Why an allocation is no longer active, from its work's state, in words."""
    if alloc.kind == "job":
        job = session.get(JobRow, alloc.item_id)
        if job is None:
            return "its job is gone"
        if job.allocation_id not in (None, alloc.id) or job.state == "pending":
            return f"moved away: the job was preempted and is {job.state} elsewhere"
        return f"the job is {job.state}: {job.reason}"
    svc = session.get(ServiceRow, alloc.item_id)
    if svc is not None and svc.state != "active":
        return f"the service is {svc.state}: {svc.reason}"
    if _horizon_ended(session, alloc):
        return "the replica's placement reached its billing horizon"
    return "the replica's placement ended (its site went down, or its agent lost it)"


def sweep_silent_sites(session: Session, now: datetime, timeout_s: float) -> list[str]:
    """Take down every site whose agent has been silent for ``timeout_s``: its session
    ends (later calls of that agent are fenced) and its work is preempted, billed up to
    the last heartbeat. Returns the ids of the sites taken down."""
    cutoff = now - timedelta(seconds=timeout_s)
    down: list[str] = []
    for site in session.scalars(
        select(SiteRow)
        .where(SiteRow.agent_state == ONLINE, SiteRow.agent_seen_at < cutoff)
        .order_by(SiteRow.id)
        .with_for_update()
    ).all():
        seen = site.agent_seen_at
        assert seen is not None
        silent_s = (now - seen).total_seconds()
        reason = f"agent silent for {silent_s:.1f} s (heartbeat timeout {timeout_s:g} s)"
        if site.up:
            set_site_up(session, site, False, reason, now, ACTOR, delivered_until=seen)
        else:  # already down (by its seller): only the agent's silence is news
            record_event(
                session,
                at=now,
                subject_kind="site",
                subject_id=site.id,
                kind="agent-silent",
                tenant_id=site.tenant_id,
                actor=ACTOR,
                reason=reason,
            )
        site.agent_state = SILENT
        site.agent_session = None
        down.append(site.id)
    return down
