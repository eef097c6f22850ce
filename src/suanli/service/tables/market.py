"""Clearing rounds and the price history they wrote."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Float, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from suanli.service.tables.base import Base, UtcDateTime

__all__ = ["MarketPrice", "RoundRow"]


class RoundRow(Base):
    __tablename__ = "rounds"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    finished_at: Mapped[datetime] = mapped_column(UtcDateTime)
    policy: Mapped[str] = mapped_column(String(20))
    pools: Mapped[int] = mapped_column(Integer)
    pending_jobs: Mapped[int] = mapped_column(Integer)
    pending_services: Mapped[int] = mapped_column(Integer)
    jobs_placed: Mapped[int] = mapped_column(Integer)
    services_placed: Mapped[int] = mapped_column(Integer)
    gpus_placed: Mapped[int] = mapped_column(Integer)
    expired: Mapped[int] = mapped_column(Integer)
    welfare_cny_per_hour: Mapped[float] = mapped_column(Float)
    solve_ms: Mapped[float] = mapped_column(Float)
    notes: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class MarketPrice(Base):
    """A pool's clearing price in one round (stored when it changed or GPUs were sold)."""

    __tablename__ = "market_prices"
    __table_args__ = (Index("ix_market_prices_pool_at", "pool_id", "at"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    round_id: Mapped[int] = mapped_column(Integer, index=True)
    pool_id: Mapped[str] = mapped_column(String(80))
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    price_cny_per_gpu_hour: Mapped[float] = mapped_column(Float)
    reserve_cny_per_gpu_hour: Mapped[float] = mapped_column(Float)
    scarcity_rent_cny_per_gpu_hour: Mapped[float] = mapped_column(Float)
    gpus_sold: Mapped[int] = mapped_column(Integer)
    free_gpus_after: Mapped[int] = mapped_column(Integer)
