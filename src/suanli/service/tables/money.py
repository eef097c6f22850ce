"""The double-entry ledger in integer fen, voucher programs and grants, invoices.

Accounts (``id`` — what it holds, its floor):

- ``world`` — money from outside (deposits, voucher budgets); no floor
- ``wallet:<tenant>`` — a buyer's spendable money; floor 0
- ``escrow:<tenant>`` — a buyer's money held for placed work; floor 0
- ``receivable:<tenant>`` — what sellers earned; floor 0
- ``platform:fee`` — the exchange's fees; floor 0
- ``voucher:<program>`` — a voucher program's budget not yet granted; floor 0
- ``grant:<program>:<tenant>`` — a buyer's undrawn grant; floor 0
- ``voucher-escrow:<program>`` — voucher money held for placed work; floor 0

Every transaction's entries sum to zero; ``balance_fen`` is the running sum of entries.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from suanli.service.tables.base import Base, UtcDateTime

__all__ = [
    "Invoice",
    "LedgerAccount",
    "LedgerEntry",
    "LedgerTransaction",
    "VoucherGrant",
    "VoucherProgramRow",
]

_BIGINT_PK = BigInteger().with_variant(Integer, "sqlite")


class LedgerAccount(Base):
    __tablename__ = "ledger_accounts"
    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    owner_id: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    floor_fen: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    balance_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class LedgerTransaction(Base):
    __tablename__ = "ledger_transactions"
    id: Mapped[int] = mapped_column(_BIGINT_PK, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))  # deposit, hold, settle, budget, grant
    ref: Mapped[str | None] = mapped_column(String(60), nullable=True, index=True)
    memo: Mapped[str] = mapped_column(String(300), default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class LedgerEntry(Base):
    __tablename__ = "ledger_entries"
    id: Mapped[int] = mapped_column(_BIGINT_PK, primary_key=True)
    txn_id: Mapped[int] = mapped_column(ForeignKey("ledger_transactions.id"), index=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("ledger_accounts.id"), index=True)
    amount_fen: Mapped[int] = mapped_column(BigInteger)


class VoucherProgramRow(Base):
    """A compute-voucher program (算力券). Eligibility lists are None for "any".

    ``claim_fen``: buyers may redeem a grant of this size themselves (None: operators
    grant). ``per_buyer_cap_fen`` bounds any one grant.
    """

    __tablename__ = "voucher_programs"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    name: Mapped[str] = mapped_column(String(200))
    coverage: Mapped[float] = mapped_column(Float)
    budget_fen: Mapped[int] = mapped_column(BigInteger)
    per_buyer_cap_fen: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    claim_fen: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    eligible_sites: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    eligible_hubs: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    eligible_provinces: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    domestic_gpus_only: Mapped[bool] = mapped_column(Boolean, default=False)
    valid_from: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    valid_until: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class VoucherGrant(Base):
    """A buyer's share of a program; its undrawn money sits in ``grant:<program>:<tenant>``."""

    __tablename__ = "voucher_grants"
    __table_args__ = (UniqueConstraint("program_id", "tenant_id"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    program_id: Mapped[str] = mapped_column(ForeignKey("voucher_programs.id"), index=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Invoice(Base):
    """A statement of usage records for one tenant; each record is on one invoice at most."""

    __tablename__ = "invoices"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    lines: Mapped[int] = mapped_column(Integer)
    gpu_hours: Mapped[float] = mapped_column(Float)
    buyer_fen: Mapped[int] = mapped_column(BigInteger)
    voucher_fen: Mapped[int] = mapped_column(BigInteger)
    total_fen: Mapped[int] = mapped_column(BigInteger)
    period_from: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    period_to: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
