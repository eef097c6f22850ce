"""Tenants, accounts, tokens, wallets."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from suanli.service.auth import Role
from suanli.service.schemas.common import Fen, In, Name, Out, PositiveFen, Text, lax_enum

__all__ = [
    "AccountCreate",
    "AccountOut",
    "DepositCreate",
    "GrantBalance",
    "MeOut",
    "TenantCreate",
    "TenantOut",
    "TokenCreate",
    "TokenOut",
    "WalletOut",
]


class AccountCreate(In):
    name: Name
    role: Role = lax_enum()


class TenantCreate(In):
    name: Name
    accounts: list[AccountCreate] = Field(default_factory=list, max_length=10)


class AccountOut(Out):
    id: str
    tenant_id: str
    name: str
    role: Role
    token: str | None = Field(default=None, description="shown once, at creation")


class TenantOut(Out):
    id: str
    name: str
    created_at: datetime
    accounts: list[AccountOut] = Field(default_factory=list)


class TokenCreate(In):
    label: Name | None = None
    expires_in_days: int | None = Field(
        default=None, ge=1, le=3650, description="the token stops working after this; None: never"
    )


class TokenOut(Out):
    id: str
    prefix: str
    label: str
    created_at: datetime
    expires_at: datetime | None = None
    current: bool = Field(default=False, description="the token this request was made with")
    token: str | None = Field(default=None, description="shown once, at creation")


class MeOut(Out):
    account_id: str
    account_name: str
    tenant_id: str
    tenant_name: str
    role: Role


class DepositCreate(In):
    amount_fen: PositiveFen
    memo: Text = ""


class GrantBalance(Out):
    program_id: str
    granted_fen: Fen
    balance_fen: int


class WalletOut(Out):
    tenant_id: str
    wallet_fen: int
    escrow_fen: int
    receivable_fen: int
    grants: list[GrantBalance] = Field(default_factory=list)
