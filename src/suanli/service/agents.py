"""Site agents' registration on the exchange's side.

A site's agent says which pools its backend found; the exchange creates or resizes them
(offering new ones at the agent's reserve, withdrawing the offers of pools no longer
found), opens a new *session* for the site (fencing the previous one) and reconciles what
the agent holds: work that was moved away or ended gets a stop order; leased work it no
longer holds is offered again, or preempted if it had started.

Runs inside the caller's write transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from suanli.catalog import Catalog, accelerator, city
from suanli.errors import UnknownName
from suanli.perf.training import speed_factor
from suanli.service.agent_session import ONLINE, SILENT, new_token, stop_orders
from suanli.service.auth import Principal
from suanli.service.events import record_event
from suanli.service.problems import FieldError, NotFound, Unprocessable
from suanli.service.schemas.agent import (
    AgentRegister,
    AgentSessionOut,
    HeldLease,
    PoolRegistered,
    PoolSkipped,
)
from suanli.service.settings import ServiceSettings
from suanli.service.settlement import settle_allocation
from suanli.service.tables import AllocationRow, JobRow, Offer, PoolRow, SiteRow, new_id
from suanli.service.work_ops import preempt_job, set_site_up

__all__ = ["create_site", "register_agent"]


def register_agent(
    session: Session,
    body: AgentRegister,
    who: Principal,
    now: datetime,
    settings: ServiceSettings,
    catalog: Catalog,
) -> AgentSessionOut:
    """Open a new session for the site (creating it from ``body.city`` if it is new),
    register the discovered pools and reconcile the work the agent holds."""
    notes: list[str] = []
    site = session.get(SiteRow, body.site_id, with_for_update=True)
    if site is None:
        if body.city is None:
            raise Unprocessable(
                f"there is no site {body.site_id!r}: give city (a catalogue city) to create it",
                errors=[FieldError(field="body.city", reason="required for a new site")],
            )
        site = create_site(
            session, body.site_id, body.site_name or body.site_id, body.city, who, now, catalog
        )
        notes.append(f"site {site.id} created in {site.city}, {site.province}")
    elif not who.is_operator and site.tenant_id != who.tenant_id:
        raise NotFound(f"no site {body.site_id!r} of yours")
    replaced = site.agent_session is not None
    if replaced and site.agent_seen_at is not None:
        quiet_s = (now - site.agent_seen_at).total_seconds()
        if quiet_s < settings.agent_heartbeat_timeout_s:
            # Two agents serving one site fence each other in turn: say so.
            notes.append(
                f"this replaces a session last heard from {quiet_s:.1f} s ago: if another "
                "agent still serves this site, stop it (one agent per site)"
            )
    if not site.up and site.agent_state == SILENT:
        set_site_up(session, site, True, "its agent registered again", now, who.account_id)
    elif not site.up:
        notes.append("the site is down (set by its seller): no work is placed on it until it is up")
    last_heard = site.agent_seen_at
    site.agent_session = new_token()
    site.agent_state = ONLINE
    site.agent_seen_at = now
    site.agent_info = {
        "backend": body.backend,
        "host": body.host,
        "version": body.version,
        "limitations": [lim.model_dump() for lim in body.limitations],
    }
    pools, skipped = _register_pools(session, site, body, who, now, catalog, notes)
    stop = stop_orders(session, site, body.held)
    lost = _release_unclaimed(session, site, body.held, now, who.account_id, last_heard)
    if lost:
        notes.append(f"{lost} started allocations the agent no longer holds were preempted")
    record_event(
        session,
        at=now,
        subject_kind="site",
        subject_id=site.id,
        kind="agent-registered",
        tenant_id=site.tenant_id,
        actor=who.account_id,
        reason=f"{body.backend} agent on {body.host or 'an unnamed host'}"
        + (" (replaces the previous session)" if replaced else ""),
        data={
            "pools": [p.pool_id for p in pools],
            "skipped": [s.name for s in skipped],
            "held": len(body.held),
            "stop": len(stop),
            "lost": lost,
        },
    )
    return AgentSessionOut(
        session=site.agent_session,
        site_id=site.id,
        site_up=site.up,
        notes=notes,
        heartbeat_interval_s=settings.agent_heartbeat_interval_s,
        heartbeat_timeout_s=settings.agent_heartbeat_timeout_s,
        pools=pools,
        skipped=skipped,
        stop=stop,
    )


def create_site(
    session: Session,
    site_id: str,
    name: str,
    city_name: str,
    who: Principal,
    now: datetime,
    catalog: Catalog,
) -> SiteRow:
    """A new site of ``who``'s tenant in catalogue city ``city_name`` (422 if unknown)."""
    try:
        where = city(catalog, city_name)
    except UnknownName as exc:
        raise Unprocessable(
            str(exc), errors=[FieldError(field="body.city", reason=str(exc))]
        ) from None
    site = SiteRow(
        id=site_id,
        tenant_id=who.tenant_id,
        name=name,
        province=where.province,
        city=where.name,
        region=where.region.value,
        lat=where.lat,
        lon=where.lon,
        hub_id=None,
        cluster_id=None,
        # ASSUMPTION: the defaults of POST /v1/sites (PUE 1.3, 0.6 yuan/kWh, 10 Gbit/s).
        pue=1.3,
        power_price_cny_per_kwh=0.6,
        wan_gbps=10.0,
        up=True,
        created_at=now,
    )
    session.add(site)
    session.flush()
    return site


def _register_pools(
    session: Session,
    site: SiteRow,
    body: AgentRegister,
    who: Principal,
    now: datetime,
    catalog: Catalog,
    notes: list[str],
) -> tuple[list[PoolRegistered], list[PoolSkipped]]:
    """Create or resize the discovered pools; withdraw offers of pools no longer found."""
    existing = {p.id: p for p in session.scalars(select(PoolRow).where(PoolRow.site_id == site.id))}
    offered = {
        o.pool_id
        for o in session.scalars(
            select(Offer).where(Offer.pool_id.in_(list(existing)), Offer.withdrawn_at.is_(None))
        )
    }
    pools: list[PoolRegistered] = []
    skipped: list[PoolSkipped] = []
    found: set[str] = set()
    for p in body.pools:
        pool_id = f"{site.id}/{p.name}"
        why_not = _unusable(p.gpu_count, p.gpus_per_node, pool_id)
        gpu_name = None
        if why_not is None:
            try:
                gpu_name = accelerator(catalog, p.gpu_model).name
            except UnknownName as exc:
                why_not = f"GPU model {p.gpu_model!r} is not in the catalogue ({exc})"
        if why_not is not None or gpu_name is None:
            skipped.append(PoolSkipped(name=p.name, reason=why_not or "unusable"))
            continue
        found.add(pool_id)
        row = existing.get(pool_id)
        if row is None:
            gpu = accelerator(catalog, gpu_name)
            row = PoolRow(
                id=pool_id,
                site_id=site.id,
                tenant_id=site.tenant_id,
                gpu=gpu.name,
                gpu_count=p.gpu_count,
                gpus_per_node=p.gpus_per_node,
                fabric=p.fabric.value,
                reserve_cny_per_gpu_hour=body.reserve_cny_per_gpu_hour or 0.0,
                speed=speed_factor(gpu),
                created_at=now,
            )
            session.add(row)
            session.flush()  # the pool's row before its offer's (no ORM relationship orders them)
        elif (row.gpu_count, row.gpus_per_node) != (p.gpu_count, p.gpus_per_node):
            notes.append(
                f"pool {pool_id} resized: {row.gpu_count} → {p.gpu_count} GPUs "
                f"({p.gpus_per_node} per node)"
            )
            row.gpu_count, row.gpus_per_node = p.gpu_count, p.gpus_per_node
        on_offer = pool_id in offered
        if not on_offer and body.reserve_cny_per_gpu_hour is not None:
            session.add(
                Offer(
                    id=new_id("offer"),
                    pool_id=pool_id,
                    tenant_id=site.tenant_id,
                    reserve_cny_per_gpu_hour=body.reserve_cny_per_gpu_hour,
                    available_from=now,
                    available_until=None,
                    created_at=now,
                )
            )
            on_offer = True
        pools.append(
            PoolRegistered(
                name=p.name, pool_id=pool_id, gpu=row.gpu, gpu_count=p.gpu_count, on_offer=on_offer
            )
        )
    gone = sorted(set(existing) - found)
    for offer in session.scalars(
        select(Offer).where(Offer.pool_id.in_(gone), Offer.withdrawn_at.is_(None))
    ):
        offer.withdrawn_at = now
        notes.append(f"pool {offer.pool_id} was not found by the agent: its offer is withdrawn")
    session.flush()
    return pools, skipped


def _unusable(gpu_count: int, gpus_per_node: int, pool_id: str) -> str | None:
    if len(pool_id) > 80:
        return f"pool id {pool_id!r} is longer than 80 characters: use a shorter site id"
    if gpu_count == 0:
        return "no GPUs"
    if gpu_count % gpus_per_node:
        return f"{gpu_count} GPUs are not whole nodes of {gpus_per_node}"
    return None


def _release_unclaimed(
    session: Session,
    site: SiteRow,
    held: Sequence[HeldLease],
    now: datetime,
    actor: str,
    last_heard: datetime | None,
) -> int:
    """Leased work the (new) agent does not hold: offered again if it never started,
    preempted if it did (the site lost it), billed up to when the site was last heard
    from (its work died with the agent before). Returns how many were preempted."""
    until = min(now, last_heard) if last_heard is not None else now
    claimed = {h.allocation_id for h in held}
    pools = list(session.scalars(select(PoolRow.id).where(PoolRow.site_id == site.id)))
    lost = 0
    for alloc in session.scalars(
        select(AllocationRow)
        .where(
            AllocationRow.active.is_(True),
            AllocationRow.pool_id.in_(pools),
            AllocationRow.leased_at.is_not(None),
        )
        .order_by(AllocationRow.id)
    ).all():
        if alloc.id in claimed:
            continue
        if alloc.started_at is None:
            alloc.leased_at, alloc.lease_token = None, None
            continue
        lost += 1
        reason = f"site {site.id}: its agent registered again without this work"
        if alloc.kind == "job":
            job = session.scalars(
                select(JobRow).where(JobRow.id == alloc.item_id).with_for_update()
            ).one()
            preempt_job(session, job, alloc, now, reason, actor, delivered_until=until)
        else:
            ran_h = max(0.0, (until - alloc.started_at).total_seconds() / 3600)
            settle_allocation(session, alloc, now, ran_h)
    return lost
