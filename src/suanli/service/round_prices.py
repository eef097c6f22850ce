"""The market prices a clearing round stores (see :mod:`suanli.service.round_write`).

A pool's price is stored when it moved since the last one stored, or when GPUs were sold
there; the last stored prices are cached on the runtime.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from suanli.market.decision import Decision
from suanli.service.round_plan import RoundSummary
from suanli.service.runtime import Runtime
from suanli.service.tables import MarketPrice

__all__ = ["write_prices"]


def write_prices(
    session: Session,
    rt: Runtime,
    decision: Decision,
    round_id: int,
    now: datetime,
    summary: RoundSummary,
) -> None:
    """Store the round's prices per pool (only where one moved, or GPUs were sold there)
    and note them all, and those stored, in ``summary``."""
    if rt.last_prices is None:
        rt.last_prices = _latest_prices(session)
    for p in decision.prices:
        price = p.price_cny_per_gpu_hour
        summary.prices[p.pool_id] = price
        last = rt.last_prices.get(p.pool_id)
        if last is not None and abs(last - price) < 1e-9 and p.gpus_sold == 0:
            continue
        summary.stored_prices[p.pool_id] = price
        session.add(
            MarketPrice(
                round_id=round_id,
                pool_id=p.pool_id,
                at=now,
                price_cny_per_gpu_hour=price,
                reserve_cny_per_gpu_hour=p.reserve_cny_per_gpu_hour,
                scarcity_rent_cny_per_gpu_hour=p.scarcity_rent_cny_per_gpu_hour,
                gpus_sold=p.gpus_sold,
                free_gpus_after=p.free_gpus_after,
            )
        )


def _latest_prices(session: Session) -> dict[str, float]:
    latest = select(func.max(MarketPrice.id)).group_by(MarketPrice.pool_id)
    rows = session.execute(
        select(MarketPrice.pool_id, MarketPrice.price_cny_per_gpu_hour).where(
            MarketPrice.id.in_(latest)
        )
    )
    return {pool_id: price for pool_id, price in rows}
