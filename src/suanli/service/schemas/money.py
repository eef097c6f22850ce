"""Vouchers, usage, invoices, allocations, ledger views, market prices and rounds."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field, model_validator

from suanli.service.schemas.common import Id, In, Name, Out, PositiveFen, Timestamp

__all__ = [
    "AllocationOut",
    "GrantCreate",
    "GrantOut",
    "InvoiceCreate",
    "InvoiceOut",
    "InvoiceTokens",
    "LedgerAccountOut",
    "PriceOut",
    "RoundOut",
    "UsageOut",
    "VoucherCreate",
    "VoucherOut",
]


class VoucherCreate(In):
    name: Name
    coverage: float = Field(gt=0, lt=1, allow_inf_nan=False)
    budget_fen: PositiveFen
    per_buyer_cap_fen: PositiveFen | None = None
    claim_fen: PositiveFen | None = Field(
        default=None, description="buyers may redeem a grant of this size themselves"
    )
    eligible_sites: list[Name] | None = Field(default=None, max_length=1000)
    eligible_hubs: list[Name] | None = Field(default=None, max_length=100)
    eligible_provinces: list[Name] | None = Field(default=None, max_length=100)
    domestic_gpus_only: bool = False
    valid_from: Timestamp | None = None
    valid_until: Timestamp | None = None

    @model_validator(mode="after")
    def _consistent(self) -> VoucherCreate:
        cap = self.per_buyer_cap_fen
        if self.claim_fen is not None and cap is not None and self.claim_fen > cap:
            raise ValueError("claim_fen must not exceed per_buyer_cap_fen")
        if self.valid_from and self.valid_until and self.valid_until <= self.valid_from:
            raise ValueError("valid_until must be after valid_from")
        return self


class VoucherOut(Out):
    id: str
    tenant_id: str
    name: str
    coverage: float
    budget_fen: int
    per_buyer_cap_fen: int | None
    claim_fen: int | None
    unallocated_fen: int = 0
    granted_fen: int = 0
    eligible_sites: list[str] | None
    eligible_hubs: list[str] | None
    eligible_provinces: list[str] | None
    domestic_gpus_only: bool
    valid_from: datetime | None
    valid_until: datetime | None
    created_at: datetime


class GrantCreate(In):
    tenant_id: Id
    amount_fen: PositiveFen


class GrantOut(Out):
    id: str
    program_id: str
    tenant_id: str
    amount_fen: int
    balance_fen: int = 0
    created_at: datetime


class AllocationOut(Out):
    id: str
    kind: str
    item_id: str
    buyer_tenant_id: str
    seller_tenant_id: str
    pool_id: str
    gpus: int
    nodes: list[list[int]]
    price_cny_per_gpu_hour: float
    planned_h: float
    buyer_fen: int
    voucher_fen: int
    seller_fen: int
    fee_fen: int
    voucher_program_id: str | None
    active: bool
    why: str
    placed_at: datetime
    started_at: datetime | None
    released_at: datetime | None


class UsageOut(Out):
    id: str
    allocation_id: str
    kind: str
    item_id: str
    buyer_tenant_id: str
    seller_tenant_id: str
    pool_id: str
    from_at: datetime
    to_at: datetime
    gpu_hours: float
    buyer_fen: int
    voucher_fen: int
    seller_fen: int
    fee_fen: int
    voucher_program_id: str | None
    exit_code: int | None
    invoice_id: str | None
    details: dict[str, Any] | None = Field(
        default=None, description="the site's own usage record (backend, source, times)"
    )


class InvoiceCreate(In):
    """Close an invoice over every usage record not yet invoiced (optionally up to a time)."""

    until: Timestamp | None = None


class InvoiceTokens(Out):
    """Tokens one of the buyer's services served: quantities the owner can re-bill its own
    users for (the exchange bills the replicas' GPU-hours, not tokens)."""

    service_id: str
    service_name: str | None = None
    requests: int = 0
    errors: int = 0
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0


class InvoiceOut(Out):
    id: str
    tenant_id: str
    lines: int
    gpu_hours: float
    buyer_fen: int
    voucher_fen: int
    total_fen: int
    period_from: datetime | None
    period_to: datetime | None
    created_at: datetime
    tokens: list[InvoiceTokens] = Field(
        default_factory=list, description="per service, the tokens served (quantities)"
    )
    tokens_from: datetime | None = Field(
        default=None,
        description="tokens are those of gateway batches received after this (the previous "
        "invoice's tokens_until; None: since the start) …",
    )
    tokens_until: datetime | None = Field(default=None, description="… and up to this")


class LedgerAccountOut(Out):
    id: str
    kind: str
    owner_id: str | None
    floor_fen: int | None
    balance_fen: int


class PriceOut(Out):
    pool_id: str
    site_id: str | None = None
    gpu: str | None = None
    round_id: int
    at: datetime
    price_cny_per_gpu_hour: float
    reserve_cny_per_gpu_hour: float
    scarcity_rent_cny_per_gpu_hour: float
    gpus_sold: int
    free_gpus_after: int


class RoundOut(Out):
    id: int
    started_at: datetime
    finished_at: datetime
    policy: str
    pools: int
    pending_jobs: int
    pending_services: int
    jobs_placed: int
    services_placed: int
    gpus_placed: int
    expired: int
    welfare_cny_per_hour: float
    solve_ms: float
    notes: list[str] | None
