"""Buyers' work (jobs, services), the GPUs it holds (allocations) and delivered usage."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from suanli.service.tables.base import Base, UtcDateTime

__all__ = ["AllocationRow", "JobRow", "ServiceRow", "UsageRow"]


class JobRow(Base):
    """A batch job; ``state`` follows :class:`suanli.engine.lifecycle.WorkState`."""

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_state", "state"),
        Index("ix_jobs_tenant", "tenant_id", "submitted_at"),
    )
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    name: Mapped[str] = mapped_column(String(100))
    image: Mapped[str | None] = mapped_column(String(300), nullable=True)
    command: Mapped[str | None] = mapped_column(Text, nullable=True)
    gpus: Mapped[int] = mapped_column(Integer)
    min_mem_gb: Mapped[float] = mapped_column(Float, default=0.0)
    allowed_gpus: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    work_ref_gpu_hours: Mapped[float] = mapped_column(Float)
    done_ref_gpu_hours: Mapped[float] = mapped_column(Float, default=0.0)
    bid_cny_per_ref_gpu_hour: Mapped[float] = mapped_column(Float)
    deadline_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    data_gb: Mapped[float] = mapped_column(Float, default=0.0)
    origin_city: Mapped[str] = mapped_column(String(60))
    interruptible: Mapped[bool] = mapped_column(Boolean, default=False)
    checkpoint_every_h: Mapped[float | None] = mapped_column(Float, nullable=True)
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    last_reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    pool_id: Mapped[str | None] = mapped_column(String(80), nullable=True)
    allocation_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    submitted_at: Mapped[datetime] = mapped_column(UtcDateTime)
    placed_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    # How the site runs it: env, working_dir, checkpoint_dir, stop_grace_s (see JobSpec).
    run_spec: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class ServiceRow(Base):
    """An inference service; ``state`` is ``active`` or ``stopped``."""

    __tablename__ = "services"
    __table_args__ = (Index("ix_services_tenant", "tenant_id", "submitted_at"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    name: Mapped[str] = mapped_column(String(100))
    model: Mapped[str] = mapped_column(String(80))
    demand_rps: Mapped[dict[str, float]] = mapped_column(JSON)
    prompt_tokens: Mapped[float] = mapped_column(Float)
    output_tokens: Mapped[float] = mapped_column(Float)
    ttft_ms: Mapped[float] = mapped_column(Float)
    tpot_ms: Mapped[float] = mapped_column(Float)
    bid_cny_per_m_output_tokens: Mapped[float] = mapped_column(Float)
    allowed_gpus: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    served_rps: Mapped[float] = mapped_column(Float, default=0.0)
    last_reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    submitted_at: Mapped[datetime] = mapped_column(UtcDateTime)
    stopped_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    # A replica's command line (None: replicas are not run by site agents) and its env,
    # health_path (see ServiceSpec).
    command: Mapped[str | None] = mapped_column(Text, nullable=True)
    run_spec: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # Token bids beside the output bid (yuan per million tokens; see market.valuation),
    # the share of prompt tokens the owner expects from the prefix cache, replica bounds.
    bid_cny_per_m_input_tokens: Mapped[float] = mapped_column(Float, default=0.0)
    bid_cny_per_m_cached_input_tokens: Mapped[float] = mapped_column(Float, default=0.0)
    cached_fraction: Mapped[float] = mapped_column(Float, default=0.0)
    min_replicas: Mapped[int] = mapped_column(Integer, default=0)
    max_replicas: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Measured demand per city, as market.demand_estimate.CityEstimate fields (city →
    # {rps, prompt_tokens, cached_fraction, output_tokens, planned_rps, low_since_s,
    # updated_s}); the demand the last round planned for (city → requests/s).
    demand_estimates: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    planned_demand_rps: Mapped[dict[str, float] | None] = mapped_column(JSON, nullable=True)


class AllocationRow(Base):
    """GPUs of one pool held by a job or a service replica, and the payment planned for
    ``planned_h`` hours (held when placed, captured in proportion to delivery).

    ``lease_token`` fences agents: each lease draws a new one and a report must carry the
    current one. ``backend_job_id``, ``endpoint`` and ``health`` are what the site's agent
    reported (the backend's job id; for replicas, where it serves and whether it answers).
    """

    __tablename__ = "allocations"
    __table_args__ = (
        Index("ix_allocations_active_pool", "active", "pool_id"),
        Index("ix_allocations_buyer", "buyer_tenant_id"),
        Index("ix_allocations_seller", "seller_tenant_id"),
    )
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    round_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    kind: Mapped[str] = mapped_column(String(10))  # "job" | "replica"
    item_id: Mapped[str] = mapped_column(String(40), index=True)
    buyer_tenant_id: Mapped[str] = mapped_column(String(40))
    seller_tenant_id: Mapped[str] = mapped_column(String(40))
    pool_id: Mapped[str] = mapped_column(ForeignKey("pools.id"))
    gpus: Mapped[int] = mapped_column(Integer)
    nodes: Mapped[list[list[int]]] = mapped_column(JSON)
    price_cny_per_gpu_hour: Mapped[float] = mapped_column(Float)
    planned_h: Mapped[float] = mapped_column(Float)
    buyer_fen: Mapped[int] = mapped_column(BigInteger)
    voucher_fen: Mapped[int] = mapped_column(BigInteger)
    seller_fen: Mapped[int] = mapped_column(BigInteger)
    fee_fen: Mapped[int] = mapped_column(BigInteger)
    voucher_program_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    active: Mapped[bool] = mapped_column(Boolean)
    why: Mapped[str] = mapped_column(Text, default="")
    placed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    leased_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    released_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    lease_token: Mapped[str | None] = mapped_column(String(40), nullable=True)
    backend_job_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    endpoint: Mapped[str | None] = mapped_column(String(300), nullable=True)
    health: Mapped[str | None] = mapped_column(String(16), nullable=True)
    health_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class UsageRow(Base):
    """GPU time one allocation delivered and what it earned. One per allocation: the
    unique ``allocation_id`` is what makes double billing impossible."""

    __tablename__ = "usage_records"
    __table_args__ = (
        Index("ix_usage_buyer", "buyer_tenant_id", "invoice_id"),
        Index("ix_usage_seller", "seller_tenant_id"),
    )
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    allocation_id: Mapped[str] = mapped_column(ForeignKey("allocations.id"), unique=True)
    kind: Mapped[str] = mapped_column(String(10))
    item_id: Mapped[str] = mapped_column(String(40))
    buyer_tenant_id: Mapped[str] = mapped_column(String(40))
    seller_tenant_id: Mapped[str] = mapped_column(String(40))
    pool_id: Mapped[str] = mapped_column(String(80))
    from_at: Mapped[datetime] = mapped_column(UtcDateTime)
    to_at: Mapped[datetime] = mapped_column(UtcDateTime)
    gpu_hours: Mapped[float] = mapped_column(Float)
    buyer_fen: Mapped[int] = mapped_column(BigInteger)
    voucher_fen: Mapped[int] = mapped_column(BigInteger)
    seller_fen: Mapped[int] = mapped_column(BigInteger)
    fee_fen: Mapped[int] = mapped_column(BigInteger)
    voucher_program_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    invoice_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
