"""The agent API: site agents register their pools, heartbeat, lease placed work and
report what happened to it.

Fencing: a registration opens a *session* for the site (heartbeats and leases carry it);
each lease draws a *lease token* for its allocation (reports carry it). A site whose agent
misses heartbeats is taken down and its session ended, so whatever that agent says later
is refused instead of billed twice.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from suanli.domain import Fabric
from suanli.service.schemas.common import Id, In, Name, Out, Text, lax_enum

__all__ = [
    "AgentLimitation",
    "AgentPool",
    "AgentRegister",
    "AgentSessionOut",
    "HeartbeatIn",
    "HeartbeatOut",
    "HeldLease",
    "LeaseOut",
    "LeaseRequest",
    "PoolRegistered",
    "PoolSkipped",
    "ReplicaHealth",
    "ReportIn",
    "StopOrder",
    "Token",
    "UsageIn",
]

Token = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,40}$")]
Endpoint = Annotated[str, StringConstraints(max_length=300, pattern=r"^https?://[\x21-\x7e]+$")]
Seconds = Annotated[float, Field(ge=0, le=1e12, allow_inf_nan=False)]
MAX_HELD = 20_000


class AgentPool(In):
    """A pool as the backend found it (``suanli.agent.PoolCapacity``)."""

    name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,59}$")]
    gpu_model: Name
    gpu_count: int = Field(ge=0, le=1_000_000)
    gpus_per_node: int = Field(ge=1, le=64)
    fabric: Fabric = lax_enum(Fabric.ETHERNET)
    gpus_free: int | None = Field(default=None, ge=0, le=1_000_000)
    simulated: bool = False


class AgentLimitation(In):
    feature: Name
    reason: Text


class HeldLease(In):
    allocation_id: Id
    lease_token: Token


class AgentRegister(In):
    site_id: Id
    site_name: Name | None = Field(default=None, description="for a new site (default: its id)")
    city: Name | None = Field(
        default=None, description="a catalogue city: creates the site there if it is new"
    )
    backend: Name
    host: Name | None = None
    version: Name | None = None
    pools: list[AgentPool] = Field(default_factory=list, max_length=64)
    limitations: list[AgentLimitation] = Field(default_factory=list, max_length=64)
    reserve_cny_per_gpu_hour: float | None = Field(
        default=None,
        ge=0,
        le=10_000,
        allow_inf_nan=False,
        description="offer pools that have no open offer at this reserve (None: do not offer)",
    )
    held: list[HeldLease] = Field(default_factory=list, max_length=MAX_HELD)


class PoolRegistered(Out):
    name: str
    pool_id: str
    gpu: str
    gpu_count: int
    on_offer: bool


class PoolSkipped(Out):
    name: str
    reason: str


class StopOrder(Out):
    allocation_id: str
    reason: str
    handover: bool = False


class AgentSessionOut(Out):
    session: str
    site_id: str
    site_up: bool
    notes: list[str]
    heartbeat_interval_s: float
    heartbeat_timeout_s: float
    pools: list[PoolRegistered]
    skipped: list[PoolSkipped]
    stop: list[StopOrder]


class ReplicaHealth(In):
    allocation_id: Id
    health: Literal["starting", "healthy", "unhealthy"]
    endpoint: Endpoint | None = None


class HeartbeatIn(In):
    site_id: Id
    session: Token
    held: list[HeldLease] = Field(default_factory=list, max_length=MAX_HELD)
    replicas: list[ReplicaHealth] = Field(default_factory=list, max_length=1000)


class HeartbeatOut(Out):
    site_up: bool
    stop: list[StopOrder]
    heartbeat_interval_s: float
    heartbeat_timeout_s: float


WorkKind = Literal["job", "replica"]


def _jobs_only() -> list[WorkKind]:
    return ["job"]


class LeaseRequest(In):
    site_id: Id | None = None
    session: Token | None = Field(
        default=None, description="the agent's session (agents); checked against the site's"
    )
    kinds: list[WorkKind] = Field(default_factory=_jobs_only, min_length=1, max_length=2)
    limit: int = Field(default=100, gt=0, le=1000)

    @model_validator(mode="after")
    def _site_with_session(self) -> LeaseRequest:
        if self.session is not None and self.site_id is None:
            raise ValueError("a session belongs to a site: give site_id with it")
        return self


class LeaseOut(Out):
    """One placed piece of work to run: a job, or one replica of a service.

    ``attempt`` counts the placements of the work so far (2, 3, … after a failover).
    ``env``, ``working_dir``, ``checkpoint_dir``, ``stop_grace_s`` come from the job's spec;
    ``health_path`` from the service's. ``continues``: the replica placement this one
    follows at a billing horizon — an agent still running that replica keeps it for this
    placement instead of starting another.
    """

    allocation_id: str
    lease_token: str
    kind: Literal["job", "replica"]
    item_id: str
    job_id: str | None
    pool_id: str
    site_id: str
    gpu: str
    gpus: int
    nodes: list[list[int]]
    image: str | None
    command: str | None
    planned_h: float
    checkpoint_every_h: float | None
    attempt: int = 1
    env: dict[str, str] = Field(default_factory=dict)
    working_dir: str | None = None
    checkpoint_dir: str | None = None
    stop_grace_s: float | None = None
    health_path: str | None = None
    continues: str | None = None


class UsageIn(In):
    """Delivered GPU time from the backend's own accounting (``suanli.agent.Usage``)."""

    gpu_seconds: Seconds
    gpus: int = Field(ge=0, le=1_000_000)
    source: Text
    started_at_s: Seconds | None = None
    ended_at_s: Seconds | None = None


class ReportIn(In):
    """What happened to a placed job or replica.

    Agents name the allocation and carry its lease token: a report for an allocation that
    has ended (the work was moved away, cancelled, or the site was taken down) or that was
    leased again since is refused (409, ``stale-report``) and bills nothing. ``job_id``
    alone (no allocation) is the older form for scripts.
    """

    job_id: Id | None = None
    allocation_id: Id | None = None
    lease_token: Token | None = None
    state: Literal["running", "succeeded", "failed", "preempted"]
    exit_code: int | None = Field(default=None, ge=-(2**31), lt=2**31)
    gpu_hours: float | None = Field(
        default=None,
        ge=0,
        le=10_000_000,
        allow_inf_nan=False,
        description="GPU-hours delivered; measured from the clock if absent",
    )
    reason: Name | None = None
    usage: UsageIn | None = None
    log_tail: Text | None = None
    backend_job_id: Annotated[str, StringConstraints(max_length=100)] | None = None
    endpoint: Endpoint | None = None

    @model_validator(mode="after")
    def _names_the_work(self) -> ReportIn:
        if self.job_id is None and self.allocation_id is None:
            raise ValueError("name the work: give allocation_id (agents) or job_id")
        if self.lease_token is not None and self.allocation_id is None:
            raise ValueError("a lease token belongs to an allocation: give allocation_id")
        return self
