"""Table models (SQLAlchemy 2, typed declarative). Request/response schemas live apart,
in ``service.schemas``; every schema change comes with a migration."""

from __future__ import annotations

from suanli.service.tables.access import Account, ApiToken, Event, IdempotencyRecord, Tenant
from suanli.service.tables.base import Base, UtcDateTime, new_id
from suanli.service.tables.fleet import Offer, PoolRow, SiteRow
from suanli.service.tables.market import MarketPrice, RoundRow
from suanli.service.tables.money import (
    Invoice,
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
    VoucherGrant,
    VoucherProgramRow,
)
from suanli.service.tables.serving import (
    GatewayBatch,
    InferenceKey,
    ServiceRoute,
    ServiceTraffic,
    TokenUsage,
)
from suanli.service.tables.work import AllocationRow, JobRow, ServiceRow, UsageRow

__all__ = [
    "Account",
    "AllocationRow",
    "ApiToken",
    "Base",
    "Event",
    "GatewayBatch",
    "IdempotencyRecord",
    "InferenceKey",
    "Invoice",
    "JobRow",
    "LedgerAccount",
    "LedgerEntry",
    "LedgerTransaction",
    "MarketPrice",
    "Offer",
    "PoolRow",
    "RoundRow",
    "ServiceRoute",
    "ServiceRow",
    "ServiceTraffic",
    "SiteRow",
    "Tenant",
    "TokenUsage",
    "UsageRow",
    "UtcDateTime",
    "VoucherGrant",
    "VoucherProgramRow",
    "new_id",
]
