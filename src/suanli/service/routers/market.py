"""The market: prices, rounds, the event log; operators may clear a round now."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import func, select

from suanli.service.clearing import run_round
from suanli.service.deps import CurrentPrincipal, Limit, Offset, Operator, Rt
from suanli.service.problems import PROBLEM_RESPONSES
from suanli.service.schemas.common import POOL_ID_PATTERN
from suanli.service.schemas.money import PriceOut, RoundOut
from suanli.service.schemas.work import EventOut
from suanli.service.tables import Event, MarketPrice, PoolRow, RoundRow

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["market"], responses=PROBLEM_RESPONSES)


@router.get("/market/prices", response_model=list[PriceOut])
def list_prices(
    rt: Rt,
    _: CurrentPrincipal,
    pool_id: Annotated[str | None, Query(pattern=POOL_ID_PATTERN)] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[PriceOut]:
    """Latest clearing price of every pool; with ``pool_id``, that pool's history."""
    with rt.db.read() as s:
        q = select(MarketPrice, PoolRow).join(
            PoolRow, PoolRow.id == MarketPrice.pool_id, isouter=True
        )
        if pool_id:
            q = q.where(MarketPrice.pool_id == pool_id).order_by(MarketPrice.id.desc())
        else:
            latest = select(func.max(MarketPrice.id)).group_by(MarketPrice.pool_id)
            q = q.where(MarketPrice.id.in_(latest)).order_by(
                MarketPrice.price_cny_per_gpu_hour.desc(), MarketPrice.pool_id
            )
        out = []
        for price, pool in s.execute(q.limit(limit).offset(offset)):
            row = PriceOut.model_validate(price)
            if pool is not None:
                row.site_id, row.gpu = pool.site_id, pool.gpu
            out.append(row)
        return out


@router.get("/market/rounds", response_model=list[RoundOut])
def list_rounds(
    rt: Rt, _: CurrentPrincipal, limit: Limit = 20, offset: Offset = 0
) -> list[RoundOut]:
    with rt.db.read() as s:
        q = select(RoundRow).order_by(RoundRow.id.desc()).limit(limit).offset(offset)
        return [RoundOut.model_validate(r) for r in s.scalars(q)]


@router.post("/market/rounds", response_model=RoundOut | None)
def post_round(rt: Rt, _: Operator) -> RoundOut | None:
    """Clear a round now (null if nothing was waiting)."""
    summary = run_round(rt)
    if summary.round_id is None:
        return None
    with rt.db.read() as s:
        row = s.get(RoundRow, summary.round_id)
        return RoundOut.model_validate(row) if row else None


@router.get("/events", response_model=list[EventOut])
def list_events(
    rt: Rt,
    who: CurrentPrincipal,
    after_id: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Limit = 100,
) -> list[EventOut]:
    """The append-only event log, oldest first after ``after_id`` (own tenant's only)."""
    with rt.db.read() as s:
        q = select(Event).where(Event.id > after_id).order_by(Event.id).limit(limit)
        if not who.is_operator:
            q = q.where(Event.tenant_id == who.tenant_id)
        return [EventOut.model_validate(e) for e in s.scalars(q)]
