"""Leasing placed work to site agents: pull-based, so a site behind NAT needs no inbound
connection. A lease is an allocation that no agent has started, with everything needed
to run it and a fresh lease token that its reports must carry. A lease not followed by
a ``running`` report within ``LEASE_TTL_S`` is offered again (with a new token: the old
lease's reports are then refused)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TypeVarTuple

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session

from suanli.service.agent_session import check_session, new_token, own_site
from suanli.service.auth import Principal
from suanli.service.schemas.agent import LeaseOut, LeaseRequest
from suanli.service.tables import AllocationRow, JobRow, PoolRow, ServiceRow

__all__ = ["LEASE_TTL_S", "lease_work"]

# A lease not followed by a "running" report within this time is offered again.
LEASE_TTL_S = 300.0

Ts = TypeVarTuple("Ts")


def lease_work(
    session: Session, body: LeaseRequest, who: Principal, now: datetime
) -> list[LeaseOut]:
    """Lease up to ``body.limit`` placed jobs (and replicas, if asked) on the caller's
    pools, oldest placement first. With a session, the site must be the agent's and up."""
    if body.session is not None:
        assert body.site_id is not None  # the schema ties a session to a site
        site = own_site(session, body.site_id, who)
        check_session(site, body.session)
        site.agent_seen_at = now
        if not site.up:
            return []
    out: list[LeaseOut] = []
    if "job" in body.kinds:
        out += _lease_jobs(session, body, who, now, body.limit)
    if "replica" in body.kinds and len(out) < body.limit:
        out += _lease_replicas(session, body, who, now, body.limit - len(out))
    return out


def _unleased(q: Select[*Ts], body: LeaseRequest, who: Principal, now: datetime) -> Select[*Ts]:
    q = q.where(
        AllocationRow.active.is_(True),
        AllocationRow.started_at.is_(None),
        or_(
            AllocationRow.leased_at.is_(None),
            AllocationRow.leased_at < now - timedelta(seconds=LEASE_TTL_S),
        ),
    ).order_by(AllocationRow.placed_at, AllocationRow.id)
    if not who.is_operator:
        q = q.where(AllocationRow.seller_tenant_id == who.tenant_id)
    if body.site_id:
        q = q.where(PoolRow.site_id == body.site_id)
    return q


def _lease_jobs(
    session: Session, body: LeaseRequest, who: Principal, now: datetime, limit: int
) -> list[LeaseOut]:
    q = _unleased(
        select(AllocationRow, JobRow, PoolRow)
        .join(JobRow, JobRow.id == AllocationRow.item_id)
        .join(PoolRow, PoolRow.id == AllocationRow.pool_id)
        .where(AllocationRow.kind == "job"),
        body,
        who,
        now,
    )
    rows = list(session.execute(q.limit(limit).with_for_update(of=AllocationRow)))
    attempts = _attempts(session, [job.id for _, job, _ in rows])
    out = []
    for alloc, job, pool in rows:
        alloc.leased_at, alloc.lease_token = now, new_token()
        spec = job.run_spec or {}
        out.append(
            LeaseOut(
                allocation_id=alloc.id,
                lease_token=alloc.lease_token,
                kind="job",
                item_id=job.id,
                job_id=job.id,
                pool_id=pool.id,
                site_id=pool.site_id,
                gpu=pool.gpu,
                gpus=alloc.gpus,
                nodes=alloc.nodes,
                image=job.image,
                command=job.command,
                planned_h=alloc.planned_h,
                checkpoint_every_h=job.checkpoint_every_h,
                attempt=attempts.get(job.id, 1),
                env=dict(spec.get("env") or {}),
                working_dir=spec.get("working_dir"),
                checkpoint_dir=spec.get("checkpoint_dir"),
                stop_grace_s=spec.get("stop_grace_s"),
            )
        )
    return out


def _lease_replicas(
    session: Session, body: LeaseRequest, who: Principal, now: datetime, limit: int
) -> list[LeaseOut]:
    # Only replicas of services with a command: the others are placed and billed only.
    q = _unleased(
        select(AllocationRow, ServiceRow, PoolRow)
        .join(ServiceRow, ServiceRow.id == AllocationRow.item_id)
        .join(PoolRow, PoolRow.id == AllocationRow.pool_id)
        .where(AllocationRow.kind == "replica", ServiceRow.command.is_not(None)),
        body,
        who,
        now,
    )
    rows = list(session.execute(q.limit(limit).with_for_update(of=AllocationRow)))
    follows = _predecessors(session, [alloc for alloc, _, _ in rows])
    out = []
    for alloc, svc, pool in rows:
        alloc.leased_at, alloc.lease_token = now, new_token()
        spec = svc.run_spec or {}
        out.append(
            LeaseOut(
                allocation_id=alloc.id,
                lease_token=alloc.lease_token,
                kind="replica",
                item_id=svc.id,
                job_id=None,
                pool_id=pool.id,
                site_id=pool.site_id,
                gpu=pool.gpu,
                gpus=alloc.gpus,
                nodes=alloc.nodes,
                image=None,
                command=svc.command,
                planned_h=alloc.planned_h,
                checkpoint_every_h=None,
                env=dict(spec.get("env") or {}),
                health_path=spec.get("health_path") or "/health",
                continues=follows.get(alloc.id),
            )
        )
    return out


def _predecessors(session: Session, allocs: Sequence[AllocationRow]) -> dict[str, str]:
    """Each new replica placement → the placement it continues: one of the same service
    on the same pool, of the same size, that started and ended at its billing horizon in
    the round that placed the new one (settled and placed at the same instant). Pairs are
    made in id order, one predecessor per successor, so every running replica is taken
    over at most once."""
    out: dict[str, str] = {}
    groups: dict[tuple[str, str, int, datetime], list[AllocationRow]] = {}
    for a in allocs:
        groups.setdefault((a.item_id, a.pool_id, a.gpus, a.placed_at), []).append(a)
    for (item, pool, gpus, at), new in groups.items():
        old = session.scalars(
            select(AllocationRow)
            .where(
                AllocationRow.item_id == item,
                AllocationRow.pool_id == pool,
                AllocationRow.gpus == gpus,
                AllocationRow.kind == "replica",
                AllocationRow.active.is_(False),
                AllocationRow.released_at == at,
                AllocationRow.started_at.is_not(None),
            )
            .order_by(AllocationRow.id)
        ).all()
        # Successors already leased in an earlier call took the first predecessors.
        taken = session.scalars(
            select(AllocationRow.id)
            .where(
                AllocationRow.item_id == item,
                AllocationRow.pool_id == pool,
                AllocationRow.placed_at == at,
                AllocationRow.kind == "replica",
                AllocationRow.lease_token.is_not(None),
            )
            .order_by(AllocationRow.id)
        ).all()
        fresh = [a for a in sorted(new, key=lambda a: a.id) if a.id not in set(taken)]
        for a, prev in zip(fresh, old[len(taken) :], strict=False):
            out[a.id] = prev.id
    return out


def _attempts(session: Session, job_ids: Sequence[str]) -> dict[str, int]:
    """Placements of each job so far (this one included): 1, then 2, 3, … after failovers."""
    if not job_ids:
        return {}
    rows = session.execute(
        select(AllocationRow.item_id, func.count())
        .where(AllocationRow.item_id.in_(list(job_ids)))
        .group_by(AllocationRow.item_id)
    )
    return {item: int(n) for item, n in rows}
