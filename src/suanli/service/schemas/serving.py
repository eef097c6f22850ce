"""What service owners send and read about serving: inference keys for their own users,
metered token usage (to re-bill those users) and measured traffic per demand city."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from suanli.service.schemas.common import In, Name, Out

__all__ = [
    "GroupBy",
    "KeyCreate",
    "KeyOut",
    "ReplicaTraffic",
    "TokenUsageOut",
    "TrafficCity",
    "TrafficOut",
]

GroupBy = Literal["service", "key", "city", "day"]


class KeyCreate(In):
    name: Name
    rpm: int | None = Field(
        default=None, ge=1, le=1_000_000, description="requests per minute; None: no limit"
    )
    tokens_per_day: int | None = Field(
        default=None,
        ge=1,
        le=10**12,
        description="input + output tokens per UTC day; None: no limit",
    )


class KeyOut(Out):
    id: str
    name: str
    service_id: str
    prefix: str = Field(description="the key's first characters, to tell keys apart")
    rpm: int | None
    tokens_per_day: int | None
    created_at: datetime
    revoked_at: datetime | None = None
    key: str | None = Field(
        default=None,
        description="the key itself: shown once, in the answer that created it (a replayed "
        "answer to a retried create leaves it out: revoke that key and create another)",
    )


class TokenUsageOut(Out):
    """One group of metered usage; the group's fields are set, the others None."""

    service_id: str | None = None
    service_name: str | None = None
    key_id: str | None = None
    key_name: str | None = None
    city: str | None = None
    day: str | None = Field(default=None, description="UTC date, YYYY-MM-DD")
    requests: int = 0
    errors: int = 0
    input_tokens: int = Field(default=0, description="prompt tokens that missed the cache")
    cached_input_tokens: int = 0
    output_tokens: int = 0
    value_cny: float = Field(
        default=0.0,
        description="these tokens at the service's own bids (yuan): an estimate to re-bill "
        "with, not what the exchange charged (replicas are billed by GPU-hour)",
    )


class TrafficCity(Out):
    city: str
    planned_rps: float | None = Field(
        default=None, description="the demand the last clearing round planned for"
    )
    requests: int = 0
    rps: float = Field(default=0.0, description="measured requests/s over the window")
    prompt_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    slo_met: int = 0
    slo_total: int = 0
    slo_attainment: float | None = Field(
        default=None, description="slo_met / slo_total; None when nothing was judged"
    )
    rejected: int = Field(default=0, description="requests refused with 429 (back-pressure)")


class ReplicaTraffic(Out):
    """Where a running replica serves from (its site's city) and whether it answers."""

    allocation_id: str
    pool_id: str
    site_id: str | None = None
    city: str | None = None
    endpoint: str | None = None
    health: str | None = None
    gpus: int = 0


class TrafficOut(Out):
    service_id: str
    minutes: int
    since: datetime
    until: datetime
    cities: list[TrafficCity] = Field(default_factory=list)
    total: TrafficCity
    replicas: list[ReplicaTraffic] = Field(default_factory=list)
