"""What an inference gateway and the exchange say to each other (JSON over HTTP, or in
process at the exchange itself).

The exchange → gateway: :class:`GatewayState`, everything a gateway needs to serve
without asking per request: the active services, their replicas (endpoint, health,
concurrency), the routing plan of the last clearing round per demand city, and the
inference keys (SHA-256 digests only, never the keys). ``etag`` is a digest of the
content: a gateway long-polls ``GET /v1/gateway/state?etag=<what it has>&wait_s=20``,
answered as soon as anything differs (a new round, a key created or revoked, a replica's
health); a revocation wakes the waiting polls at once.

Gateway → exchange: :class:`GatewayReport`, one batch of metered usage (per key ×
service × city) and measured demand (per service × city) over a window. ``batch_id`` is
unique per batch: the exchange records a batch once however often it is sent, which is
what lets a gateway journal batches and resend them after a restart or a lost answer.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "CityRoute",
    "DemandLine",
    "GatewayReport",
    "GatewayState",
    "KeyEntry",
    "ReplicaEntry",
    "ReportAck",
    "ServiceEntry",
    "UsageLine",
]

CITY_HEADER = "x-suanli-city"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReplicaEntry(_Model):
    """One running replica of a service (an allocation of kind ``replica``)."""

    allocation_id: str
    pool_id: str
    site_id: str | None = None
    city: str | None = None  # the site's city
    endpoint: str  # e.g. http://10.0.0.5:8000 (the OpenAI paths hang below it)
    health: str | None = None  # "healthy" | "starting" | "unhealthy" | None (not probed)
    max_concurrency: int = Field(ge=1)  # in-flight requests the perf model admits (batch)
    health_path: str = "/health"  # the service's health path on the replica


class CityRoute(_Model):
    """Where a demand city's requests go: a pool with replicas, the requests/s the last
    round routed there (``weight``; 0 for a fallback outside the plan) and the network
    round trip from the city to the pool's site."""

    pool_id: str
    weight: float = Field(ge=0)
    rtt_ms: float = Field(ge=0)
    in_plan: bool


class ServiceEntry(_Model):
    id: str
    name: str
    tenant_id: str
    model: str  # the catalogue model the service runs (shown in /v1/models)
    ttft_ms: float
    tpot_ms: float
    server_ttft_ms: float = 0.0  # what the perf model expects server-side, for fallbacks
    replicas: list[ReplicaEntry] = Field(default_factory=list)
    # demand city → routes: the round's routes first (by weight), then pools that still
    # meet the TTFT SLO from that city (weight 0); an empty list: none does (a gateway
    # then answers from another replica as a last resort, judged as missing the SLO);
    # cities without an entry use "*".
    routes: dict[str, list[CityRoute]] = Field(default_factory=dict)


class KeyEntry(_Model):
    id: str
    digest: str  # SHA-256 hex of the key
    service_id: str
    rpm: int | None = None  # requests per minute, None: no limit
    tokens_per_day: int | None = None  # input + output tokens per UTC day
    tokens_today: int = 0  # what the exchange has recorded today


class GatewayState(_Model):
    etag: str
    generated_at: datetime
    round_id: int | None = None
    services: list[ServiceEntry] = Field(default_factory=list)
    keys: list[KeyEntry] = Field(default_factory=list)


class UsageLine(_Model):
    key_id: str
    service_id: str
    city: str
    requests: int = Field(ge=0)
    errors: int = Field(ge=0, default=0)
    input_tokens: int = Field(ge=0)  # prompt tokens that missed the prefix cache
    cached_input_tokens: int = Field(ge=0, default=0)
    output_tokens: int = Field(ge=0)


class DemandLine(_Model):
    service_id: str
    city: str
    requests: int = Field(ge=0)
    prompt_tokens: int = Field(ge=0)  # all prompt tokens (cache hit or miss)
    cached_tokens: int = Field(ge=0, default=0)
    output_tokens: int = Field(ge=0)
    slo_met: int = Field(ge=0, default=0)  # requests whose TTFT and TPOT met the SLO
    slo_total: int = Field(ge=0, default=0)  # requests judged (completed or failed)
    rejected: int = Field(ge=0, default=0)  # 429s (back-pressure)


class GatewayReport(_Model):
    batch_id: str = Field(min_length=8, max_length=64)
    gateway: str = Field(min_length=1, max_length=100)  # e.g. "edge-Shanghai"
    window_start: datetime
    window_end: datetime
    usage: list[UsageLine] = Field(default_factory=list, max_length=10_000)
    demand: list[DemandLine] = Field(default_factory=list, max_length=10_000)


class ReportAck(_Model):
    batch_id: str
    duplicate: bool  # True: this batch was already recorded (nothing added twice)
