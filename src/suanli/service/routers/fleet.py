"""Sellers: sites, pools, offers; site outages."""

from __future__ import annotations

import re

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from suanli.catalog import accelerator
from suanli.errors import UnknownName
from suanli.perf.training import speed_factor
from suanli.service.auth import Principal
from suanli.service.deps import (
    CurrentPrincipal,
    IdempotencyKey,
    Limit,
    Offset,
    PathId,
    Rt,
    Seller,
    SellerOnly,
)
from suanli.service.idempotency import run_idempotent
from suanli.service.market_view import open_offers
from suanli.service.problems import PROBLEM_RESPONSES, Conflict, FieldError, NotFound, Unprocessable
from suanli.service.schemas.fleet import (
    OfferCreate,
    OfferOut,
    PoolCreate,
    PoolOut,
    PoolUpdate,
    SiteCreate,
    SiteOut,
    SiteState,
)
from suanli.service.tables import AllocationRow, Offer, PoolRow, SiteRow, new_id
from suanli.service.work_ops import set_site_up

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["fleet"], responses=PROBLEM_RESPONSES)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "x"


def _own_site(session: Session, site_id: str, who: Principal, lock: bool = False) -> SiteRow:
    row = session.get(SiteRow, site_id, with_for_update=lock)
    if row is None or (not who.is_operator and row.tenant_id != who.tenant_id):
        raise NotFound(f"no site {site_id!r} of yours")
    return row


def _own_pool(session: Session, pool_id: str, who: Principal) -> PoolRow:
    row = session.get(PoolRow, pool_id)
    if row is None or (not who.is_operator and row.tenant_id != who.tenant_id):
        raise NotFound(f"no pool {pool_id!r} of yours")
    return row


@router.post("/sites", status_code=201, response_model=SiteOut)
def post_site(body: SiteCreate, rt: Rt, who: SellerOnly) -> SiteOut:
    now = rt.clock.now()

    def run(session: Session) -> SiteOut:
        site_id = body.id or f"{_slug(body.name)}-{new_id('s')[2:]}"
        if session.get(SiteRow, site_id) is not None:
            raise Conflict(f"site id {site_id!r} is taken; choose another")
        row = SiteRow(
            id=site_id,
            tenant_id=who.tenant_id,
            name=body.name,
            province=body.province,
            city=body.city or "",
            region=body.region.value,
            lat=body.lat,
            lon=body.lon,
            hub_id=body.hub_id,
            cluster_id=None,
            pue=body.pue,
            power_price_cny_per_kwh=body.power_price_cny_per_kwh,
            wan_gbps=body.wan_gbps,
            up=True,
            created_at=now,
        )
        session.add(row)
        session.flush()
        return SiteOut.model_validate(row)

    return rt.db.transact(run)


@router.get("/sites", response_model=list[SiteOut])
def list_sites(rt: Rt, who: Seller, limit: Limit = 100, offset: Offset = 0) -> list[SiteOut]:
    with rt.db.read() as s:
        q = select(SiteRow).order_by(SiteRow.id).limit(limit).offset(offset)
        if not who.is_operator:
            q = q.where(SiteRow.tenant_id == who.tenant_id)
        return [SiteOut.model_validate(r) for r in s.scalars(q)]


@router.get("/sites/{site_id}", response_model=SiteOut)
def get_site(site_id: PathId, rt: Rt, who: Seller) -> SiteOut:
    with rt.db.read() as s:
        return SiteOut.model_validate(_own_site(s, site_id, who))


@router.post("/sites/{site_id}/state", response_model=SiteOut)
def post_site_state(
    site_id: PathId,
    body: SiteState,
    request: Request,
    rt: Rt,
    who: Seller,
    key: IdempotencyKey = None,
) -> Response:
    """Report a site down (its work is preempted and billed for time delivered) or up."""

    def run(session: Session) -> tuple[int, SiteOut]:
        site = _own_site(session, site_id, who, lock=True)
        set_site_up(session, site, body.up, body.reason, rt.clock.now(), who.account_id)
        session.flush()
        return 200, SiteOut.model_validate(site)

    return run_idempotent(rt.db, who, key, "POST", request.url.path, body, rt.clock.now, run)


def _pool_out(session: Session, row: PoolRow, on_offer: bool) -> PoolOut:
    out = PoolOut.model_validate(row)
    out.gpus_allocated = int(
        session.scalar(
            select(func.coalesce(func.sum(AllocationRow.gpus), 0)).where(
                AllocationRow.pool_id == row.id, AllocationRow.active.is_(True)
            )
        )
        or 0
    )
    out.on_offer = on_offer
    return out


@router.post("/pools", status_code=201, response_model=PoolOut)
def post_pool(body: PoolCreate, rt: Rt, who: SellerOnly) -> PoolOut:
    now = rt.clock.now()
    try:
        gpu = accelerator(rt.catalog, body.gpu)
    except UnknownName as exc:
        raise Unprocessable(
            str(exc), errors=[FieldError(field="body.gpu", reason=str(exc))]
        ) from None

    def run(session: Session) -> PoolOut:
        site = _own_site(session, body.site_id, who)
        pool_id = body.id or f"{site.id}/{_slug(gpu.name)}-{new_id('p')[2:8]}"
        if session.get(PoolRow, pool_id) is not None:
            raise Conflict(f"pool id {pool_id!r} is taken; choose another")
        row = PoolRow(
            id=pool_id,
            site_id=site.id,
            tenant_id=who.tenant_id,
            gpu=gpu.name,
            gpu_count=body.gpu_count,
            gpus_per_node=body.gpus_per_node,
            fabric=body.fabric.value,
            reserve_cny_per_gpu_hour=body.reserve_cny_per_gpu_hour,
            speed=speed_factor(gpu),
            created_at=now,
        )
        session.add(row)
        session.flush()
        return _pool_out(session, row, False)

    return rt.db.transact(run)


@router.get("/pools", response_model=list[PoolOut])
def list_pools(rt: Rt, who: Seller, limit: Limit = 100, offset: Offset = 0) -> list[PoolOut]:
    with rt.db.read() as s:
        q = select(PoolRow).order_by(PoolRow.id).limit(limit).offset(offset)
        if not who.is_operator:
            q = q.where(PoolRow.tenant_id == who.tenant_id)
        offers = open_offers(s, rt.clock.now())
        return [_pool_out(s, r, r.id in offers) for r in s.scalars(q)]


@router.get("/pools/{pool_id:path}", response_model=PoolOut)
def get_pool(pool_id: str, rt: Rt, who: Seller) -> PoolOut:
    with rt.db.read() as s:
        row = _own_pool(s, _pool_id(pool_id), who)
        return _pool_out(s, row, row.id in open_offers(s, rt.clock.now()))


@router.patch("/pools/{pool_id:path}", response_model=PoolOut)
def patch_pool(pool_id: str, body: PoolUpdate, rt: Rt, who: SellerOnly) -> PoolOut:
    def run(session: Session) -> PoolOut:
        row = _own_pool(session, _pool_id(pool_id), who)
        if body.reserve_cny_per_gpu_hour is not None:
            row.reserve_cny_per_gpu_hour = body.reserve_cny_per_gpu_hour
        session.flush()
        return _pool_out(session, row, row.id in open_offers(session, rt.clock.now()))

    return rt.db.transact(run)


def _pool_id(raw: str) -> str:
    # Pool ids contain one "/" (site/pool); anything else is refused as not found.
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,79}", raw):
        raise NotFound(f"no pool {raw[:80]!r}")
    return raw


@router.post("/offers", status_code=201, response_model=OfferOut)
def post_offer(body: OfferCreate, rt: Rt, who: SellerOnly) -> OfferOut:
    """Put a pool on the market at a reserve price, for a window (open-ended if no end)."""
    now = rt.clock.now()

    def run(session: Session) -> OfferOut:
        pool = _own_pool(session, _pool_id(body.pool_id), who)
        row = Offer(
            id=new_id("offer"),
            pool_id=pool.id,
            tenant_id=pool.tenant_id,
            reserve_cny_per_gpu_hour=body.reserve_cny_per_gpu_hour,
            available_from=body.available_from or now,
            available_until=body.available_until,
            created_at=now,
        )
        session.add(row)
        session.flush()
        return OfferOut.model_validate(row)

    return rt.db.transact(run)


@router.get("/offers", response_model=list[OfferOut])
def list_offers(
    rt: Rt, who: CurrentPrincipal, limit: Limit = 100, offset: Offset = 0
) -> list[OfferOut]:
    """Sellers see their own offers; buyers and operators see every offer."""
    with rt.db.read() as s:
        q = select(Offer).order_by(Offer.created_at.desc(), Offer.id).limit(limit).offset(offset)
        if who.role.value == "seller":
            q = q.where(Offer.tenant_id == who.tenant_id)
        return [OfferOut.model_validate(r) for r in s.scalars(q)]


@router.delete("/offers/{offer_id}", response_model=OfferOut)
def withdraw_offer(offer_id: PathId, rt: Rt, who: SellerOnly) -> OfferOut:
    """Withdraw an offer: the pool takes no new work; placed work keeps its GPUs."""
    now = rt.clock.now()

    def run(session: Session) -> OfferOut:
        row = session.get(Offer, offer_id)
        if row is None or row.tenant_id != who.tenant_id:
            raise NotFound(f"no offer {offer_id!r} of yours")
        if row.withdrawn_at is None:
            row.withdrawn_at = now
        session.flush()
        return OfferOut.model_validate(row)

    return rt.db.transact(run)
