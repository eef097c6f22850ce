"""Rows → the engine's values: sites, pools on offer, voucher programs, occupancy.

A pool is on the market while its site is up and one of its offers is open; the newest
open offer sets the reserve. A voucher program reaches the engine as one
``VoucherProgram`` whose eligible buyers are the tenants holding a grant, and whose
per-buyer headroom is each grant's undrawn balance (encoded as ``per_buyer_cap_cny``
minus ``spent_by_buyer_cny``), so the engine never draws more than a grant holds.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from suanli.domain import Fabric, Pool, PoolId, Region, Site, SiteId
from suanli.market.snapshot import VoucherProgram
from suanli.service.clock import hours
from suanli.service.ledger import grant
from suanli.service.tables import (
    AllocationRow,
    LedgerAccount,
    Offer,
    PoolRow,
    SiteRow,
    VoucherGrant,
    VoucherProgramRow,
)

__all__ = ["MarketView", "load_market_view", "open_offers", "voucher_programs"]


@dataclass(frozen=True)
class MarketView:
    sites: dict[SiteId, Site]
    pools: list[Pool]
    speed: dict[str, float]
    seller_of_pool: dict[str, str]
    active: list[AllocationRow]


def site_value(row: SiteRow) -> Site:
    return Site(
        id=SiteId(row.id),
        name=row.name,
        province=row.province,
        city=row.city,
        region=Region(row.region),
        lat=row.lat,
        lon=row.lon,
        hub_id=row.hub_id,
        cluster_id=row.cluster_id,
        pue=row.pue,
        power_price_cny_per_kwh=row.power_price_cny_per_kwh,
        wan_gbps=row.wan_gbps,
        operator=row.tenant_id,
        private_to=row.private_tenant_id,
    )


def open_offers(session: Session, now: datetime) -> dict[str, Offer]:
    """The newest open offer of each pool."""
    rows = session.scalars(
        select(Offer)
        .where(
            Offer.withdrawn_at.is_(None),
            Offer.available_from <= now,
            or_(Offer.available_until.is_(None), Offer.available_until > now),
        )
        .order_by(Offer.created_at, Offer.id)
    )
    return {o.pool_id: o for o in rows}


def load_market_view(session: Session, now: datetime) -> MarketView:
    offers = open_offers(session, now)
    site_rows = {s.id: s for s in session.scalars(select(SiteRow).where(SiteRow.up.is_(True)))}
    pools: list[Pool] = []
    speed: dict[str, float] = {}
    seller: dict[str, str] = {}
    for row in session.scalars(select(PoolRow).order_by(PoolRow.id)):
        offer = offers.get(row.id)
        if offer is None or row.site_id not in site_rows:
            continue
        pools.append(
            Pool(
                id=PoolId(row.id),
                site_id=SiteId(row.site_id),
                gpu=row.gpu,
                gpu_count=row.gpu_count,
                gpus_per_node=row.gpus_per_node,
                fabric=Fabric(row.fabric),
                reserve_cny_per_gpu_hour=offer.reserve_cny_per_gpu_hour,
                capex_cny_per_gpu_hour=0.0,
            )
        )
        speed[row.id] = row.speed
        seller[row.id] = row.tenant_id
    used_sites = {p.site_id for p in pools}
    sites = {SiteId(s): site_value(site_rows[s]) for s in sorted(used_sites)}
    active = list(
        session.scalars(
            select(AllocationRow).where(
                AllocationRow.active.is_(True), AllocationRow.pool_id.in_(list(speed))
            )
        )
    )
    return MarketView(sites=sites, pools=pools, speed=speed, seller_of_pool=seller, active=active)


def voucher_programs(session: Session, now: datetime) -> list[VoucherProgram]:
    """Valid programs with at least one grant that still holds money."""
    programs = list(
        session.scalars(
            select(VoucherProgramRow).where(
                and_(
                    or_(
                        VoucherProgramRow.valid_from.is_(None), VoucherProgramRow.valid_from <= now
                    ),
                    or_(
                        VoucherProgramRow.valid_until.is_(None),
                        VoucherProgramRow.valid_until > now,
                    ),
                )
            )
        )
    )
    if not programs:
        return []
    grants: dict[str, list[str]] = defaultdict(list)
    for g in session.scalars(
        select(VoucherGrant).where(VoucherGrant.program_id.in_([p.id for p in programs]))
    ):
        grants[g.program_id].append(g.tenant_id)
    acc_ids = [grant(p, t) for p, ts in grants.items() for t in ts]
    balance = {
        a.id: a.balance_fen
        for a in session.scalars(select(LedgerAccount).where(LedgerAccount.id.in_(acc_ids)))
    }
    out = []
    for p in programs:
        left = {t: balance.get(grant(p.id, t), 0) for t in grants.get(p.id, [])}
        left = {t: fen for t, fen in left.items() if fen > 0}
        if not left:
            continue
        top_fen = max(left.values())
        out.append(
            VoucherProgram(
                id=p.id,
                name=p.name,
                coverage=p.coverage,
                budget_cny=sum(left.values()) / 100,
                per_buyer_cap_cny=top_fen / 100,
                spent_by_buyer_cny={t: (top_fen - fen) / 100 for t, fen in left.items()},
                eligible_sites=frozenset(p.eligible_sites) if p.eligible_sites else None,
                eligible_hubs=frozenset(p.eligible_hubs) if p.eligible_hubs else None,
                eligible_provinces=(
                    frozenset(p.eligible_provinces) if p.eligible_provinces else None
                ),
                eligible_buyers=frozenset(left),
                domestic_gpus_only=p.domestic_gpus_only,
                valid_from_h=hours(p.valid_from) if p.valid_from else float("-inf"),
                valid_until_h=hours(p.valid_until) if p.valid_until else float("inf"),
            )
        )
    return out
