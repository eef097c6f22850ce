"""Settings of the exchange service, built once in the entry point and passed down.

Read from arguments first, then ``SUANLI_*`` environment variables, then the defaults
below. :meth:`ServiceSettings.check_safe` refuses unsafe choices outside development:
binding a non-loopback address without ``allow_remote``.
"""

from __future__ import annotations

import ipaddress
from enum import StrEnum
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from suanli.errors import InvalidInput
from suanli.gateway.config import parse_networks
from suanli.market.demand_estimate import EstimatorParams

__all__ = ["Environment", "ServiceSettings", "default_data_dir"]


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/suanli`` or ``~/.local/share/suanli``."""
    import os

    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "suanli"


class ServiceSettings(BaseSettings):
    """Everything the service needs; no module reads the environment on its own."""

    model_config = SettingsConfigDict(env_prefix="SUANLI_", extra="forbid", frozen=True)

    environment: Environment = Environment.PRODUCTION
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    allow_remote: bool = False
    data_dir: Path = Field(default_factory=default_data_dir)
    database_url: str | None = None  # None: SQLite file ``exchange.db`` in ``data_dir``
    clear_interval_s: float = Field(default=5.0, gt=0, le=3600)
    clearing_enabled: bool = True
    fee_rate: float = Field(default=0.02, ge=0, lt=1)
    service_horizon_h: float = Field(default=0.25, gt=0, le=24)
    max_body_bytes: int = Field(default=1_048_576, gt=0)
    rate_limit_per_s: float = Field(default=2000.0, gt=0)
    rate_limit_burst: int = Field(default=4000, gt=0)
    # Failed authentications per client address (a bad or revoked token), refilled at
    # this rate; once spent, that address's requests with unknown tokens get 429.
    auth_failures_per_min: float = Field(default=30.0, gt=0)
    auth_failure_burst: int = Field(default=30, gt=0)
    db_pool_size: int = Field(default=16, gt=0, le=200)
    # Live API tokens one account may hold; minting past it asks to revoke some first.
    max_tokens_per_account: int = Field(default=20, gt=0, le=10_000)
    # Site agents heartbeat this often; a site silent for the timeout is taken down and
    # its work placed again elsewhere (the timeout should be several intervals).
    agent_heartbeat_interval_s: float = Field(default=5.0, gt=0, le=3600)
    agent_heartbeat_timeout_s: float = Field(default=30.0, gt=0, le=86_400)
    # Measured demand (gateways' reports) → the demand rounds plan for: EWMA half-life,
    # headroom above the estimate, and scale-down hysteresis (see market.demand_estimate).
    demand_half_life_s: float = Field(default=300.0, gt=0, le=86_400)
    demand_headroom: float = Field(default=1.2, ge=1.0, le=10.0)
    demand_down_band: float = Field(default=0.75, gt=0, le=1.0)
    demand_down_after_s: float = Field(default=900.0, ge=0, le=86_400)
    # The exchange's own inference gateway (OpenAI-compatible /v1/chat/completions …):
    # the city its callers stand in (None: any), and the edge gateways' addresses whose
    # ``x-suanli-city`` header it believes (IP networks; none by default).
    gateway_enabled: bool = True
    gateway_city: str | None = None
    gateway_trusted_edges: list[str] = Field(default_factory=list)

    @property
    def estimator(self) -> EstimatorParams:
        return EstimatorParams(
            half_life_s=self.demand_half_life_s,
            headroom=self.demand_headroom,
            down_band=self.demand_down_band,
            down_after_s=self.demand_down_after_s,
        )

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'exchange.db'}"

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @field_validator("gateway_trusted_edges")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        parse_networks(tuple(v))  # ValueError names the bad one
        return v

    def check_safe(self) -> None:
        """InvalidInput if these settings would expose the exchange by default."""
        if self.environment is Environment.DEVELOPMENT:
            return
        if not self.is_loopback and not self.allow_remote:
            raise InvalidInput(
                f"refusing to listen on {self.host}: not a loopback address. Pass "
                "--allow-remote (SUANLI_ALLOW_REMOTE=1) if the exchange should be reachable "
                "from other machines, behind TLS"
            )
