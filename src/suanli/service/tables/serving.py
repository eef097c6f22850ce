"""Serving inference through gateways: the routing plan of the last round, inference
keys, metered token usage (recorded once per gateway batch) and measured traffic."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from suanli.service.tables.base import Base, UtcDateTime

__all__ = ["GatewayBatch", "InferenceKey", "ServiceRoute", "ServiceTraffic", "TokenUsage"]


class ServiceRoute(Base):
    """Demand of one city a clearing round sent to one pool's replicas of a service:
    replaced as a whole when a round places the service anew, added to when a round adds
    replicas beside live ones (rows of rounds whose replicas all ended stop counting)."""

    __tablename__ = "service_routes"
    __table_args__ = (Index("ix_service_routes_service", "service_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    service_id: Mapped[str] = mapped_column(ForeignKey("services.id"))
    round_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    city: Mapped[str] = mapped_column(String(60))
    pool_id: Mapped[str] = mapped_column(String(80))
    rps: Mapped[float] = mapped_column(Float)
    rtt_ms: Mapped[float] = mapped_column(Float)
    ttft_ms: Mapped[float] = mapped_column(Float)  # expected TTFT there (network + server)


class InferenceKey(Base):
    """A key a service's owner gives its own users; stored as its SHA-256, shown once.

    Valid for ``service_id`` only, while not revoked; ``rpm`` and ``tokens_per_day``
    (None: no limit) are enforced by the gateways."""

    __tablename__ = "inference_keys"
    __table_args__ = (Index("ix_inference_keys_tenant", "tenant_id"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    service_id: Mapped[str] = mapped_column(ForeignKey("services.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    rpm: Mapped[int | None] = mapped_column(Integer, nullable=True)
    tokens_per_day: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class GatewayBatch(Base):
    """One report batch of one gateway, recorded once: its unique ``batch_id`` is what
    makes a resent batch (after a restart or a lost answer) add nothing."""

    __tablename__ = "gateway_batches"
    batch_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    gateway: Mapped[str] = mapped_column(String(100))
    window_start: Mapped[datetime] = mapped_column(UtcDateTime)
    window_end: Mapped[datetime] = mapped_column(UtcDateTime)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)


class TokenUsage(Base):
    """Tokens one key used on one service from one city, per gateway batch."""

    __tablename__ = "token_usage"
    __table_args__ = (
        Index("ix_token_usage_service", "service_id", "window_end"),
        Index("ix_token_usage_tenant", "tenant_id", "window_end"),
        Index("ix_token_usage_key", "key_id", "window_end"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    batch_id: Mapped[str] = mapped_column(ForeignKey("gateway_batches.batch_id"))
    tenant_id: Mapped[str] = mapped_column(String(40))  # the service's owner
    service_id: Mapped[str] = mapped_column(String(40))
    key_id: Mapped[str] = mapped_column(String(40))
    city: Mapped[str] = mapped_column(String(60))
    window_end: Mapped[datetime] = mapped_column(UtcDateTime)
    requests: Mapped[int] = mapped_column(Integer)
    errors: Mapped[int] = mapped_column(Integer, default=0)
    input_tokens: Mapped[int] = mapped_column(BigInteger)  # cache misses
    cached_input_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    output_tokens: Mapped[int] = mapped_column(BigInteger)


class ServiceTraffic(Base):
    """Measured demand of one service in one city over one gateway batch window, with
    SLO attainment (requests that met TTFT and TPOT out of those judged)."""

    __tablename__ = "service_traffic"
    __table_args__ = (Index("ix_service_traffic_service", "service_id", "window_end"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    batch_id: Mapped[str] = mapped_column(ForeignKey("gateway_batches.batch_id"))
    service_id: Mapped[str] = mapped_column(String(40))
    city: Mapped[str] = mapped_column(String(60))
    window_start: Mapped[datetime] = mapped_column(UtcDateTime)
    window_end: Mapped[datetime] = mapped_column(UtcDateTime)
    requests: Mapped[int] = mapped_column(Integer)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger)
    cached_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    output_tokens: Mapped[int] = mapped_column(BigInteger)
    slo_met: Mapped[int] = mapped_column(Integer, default=0)
    slo_total: Mapped[int] = mapped_column(Integer, default=0)
    rejected: Mapped[int] = mapped_column(Integer, default=0)
