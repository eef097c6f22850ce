"""Sellers' sites and pools, and the offers that put a pool on the market."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from suanli.service.tables.base import Base, UtcDateTime

__all__ = ["Offer", "PoolRow", "SiteRow"]


class SiteRow(Base):
    """A seller's site. The ``agent_*`` columns are its site agent's: the session of the
    agent registered now (None once it was fenced), ``online`` / ``silent`` (taken down
    for missed heartbeats) or None (no agent ever), when it last called, and what it said
    about itself (backend, host, limitations)."""

    __tablename__ = "sites"
    id: Mapped[str] = mapped_column(String(60), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    province: Mapped[str] = mapped_column(String(60))
    city: Mapped[str] = mapped_column(String(60), default="")
    region: Mapped[str] = mapped_column(String(16))
    lat: Mapped[float] = mapped_column(Float)
    lon: Mapped[float] = mapped_column(Float)
    hub_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    cluster_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    pue: Mapped[float] = mapped_column(Float)
    power_price_cny_per_kwh: Mapped[float] = mapped_column(Float)
    wan_gbps: Mapped[float] = mapped_column(Float)
    up: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    agent_session: Mapped[str | None] = mapped_column(String(40), nullable=True)
    agent_state: Mapped[str | None] = mapped_column(String(16), nullable=True)
    agent_seen_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    agent_info: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # When set, the site's pools take work only from this buyer tenant.
    private_tenant_id: Mapped[str | None] = mapped_column(String(40), nullable=True)


class PoolRow(Base):
    """GPUs of one model at one site. ``speed``: reference GPUs per GPU (H100 = 1)."""

    __tablename__ = "pools"
    id: Mapped[str] = mapped_column(String(80), primary_key=True)
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"), index=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    gpu: Mapped[str] = mapped_column(String(40))
    gpu_count: Mapped[int] = mapped_column(Integer)
    gpus_per_node: Mapped[int] = mapped_column(Integer)
    fabric: Mapped[str] = mapped_column(String(16))
    reserve_cny_per_gpu_hour: Mapped[float] = mapped_column(Float)
    speed: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Offer(Base):
    """A pool is on the market while one of its offers is open; the newest sets the reserve."""

    __tablename__ = "offers"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    pool_id: Mapped[str] = mapped_column(ForeignKey("pools.id"), index=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    reserve_cny_per_gpu_hour: Mapped[float] = mapped_column(Float)
    available_from: Mapped[datetime] = mapped_column(UtcDateTime)
    available_until: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    withdrawn_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
