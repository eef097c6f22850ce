"""How an agent serves its site: the settings ``suanli agent`` (or ``suanli up``) builds."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["NO_CONTAINERS", "AgentSettings"]

# What every agent tells the exchange it cannot do, beside its backend's own limitations.
NO_CONTAINERS = (
    "containers",
    "images are not pulled: work runs its command in the site's own environment; "
    "image-only work fails here",
)


class AgentSettings(BaseModel):
    """How an agent serves one site.

    ``city`` / ``site_name`` create the site if it is new; ``reserve_cny_per_gpu_hour``
    offers pools that have no open offer (None: the seller offers them);
    ``advertise_host`` is where replicas' endpoints are reached. A replica answering no
    health probe is "starting" for ``replica_start_grace_s``, then "unhealthy"; one whose
    placement ended at its horizon waits ``handover_s`` for the next placement to take it
    over before it is stopped.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    site_id: str
    state_dir: Path
    city: str | None = None
    site_name: str | None = None
    reserve_cny_per_gpu_hour: float | None = Field(default=None, ge=0)
    advertise_host: str = "127.0.0.1"
    poll_interval_s: float = Field(default=0.5, gt=0)
    lease_interval_s: float = Field(default=1.0, gt=0)
    lease_limit: int = Field(default=100, gt=0, le=1000)
    replica_start_grace_s: float = Field(default=600.0, ge=0)
    handover_s: float = Field(default=30.0, ge=0)
    retry_max_s: float = Field(default=10.0, gt=0)
