"""What every request handler and the clearing loop share, built once by ``create_app``."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from suanli.catalog import Catalog
from suanli.market.context import MarketContext
from suanli.service.auth import TokenCache
from suanli.service.clock import ServiceClock
from suanli.service.db import Database
from suanli.service.metrics import Metrics
from suanli.service.notify import Changes
from suanli.service.settings import ServiceSettings

__all__ = ["Runtime"]


@dataclass
class Runtime:
    settings: ServiceSettings
    db: Database
    clock: ServiceClock
    catalog: Catalog
    ctx: MarketContext
    metrics: Metrics
    tokens: TokenCache = field(default_factory=TokenCache)
    # Last stored price per pool: a price row is written only when it changes.
    last_prices: dict[str, float] | None = None
    round_lock: threading.Lock = field(default_factory=threading.Lock)
    # Bumped by whatever changes what inference gateways see (see service.notify).
    serving_changes: Changes = field(default_factory=Changes)
