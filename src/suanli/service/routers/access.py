"""Tenants, accounts, tokens, wallets, deposits."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from suanli.service.accounts import create_account, create_tenant, deposit, live_tokens, mint_token
from suanli.service.deps import (
    CurrentPrincipal,
    IdempotencyKey,
    Limit,
    Offset,
    Operator,
    PathId,
    Rt,
)
from suanli.service.idempotency import run_idempotent
from suanli.service.ledger import escrow, grant, receivable, wallet
from suanli.service.problems import PROBLEM_RESPONSES, NotFound
from suanli.service.schemas.access import (
    AccountCreate,
    AccountOut,
    DepositCreate,
    GrantBalance,
    MeOut,
    TenantCreate,
    TenantOut,
    TokenCreate,
    TokenOut,
    WalletOut,
)
from suanli.service.schemas.common import ID_PATTERN
from suanli.service.tables import Account, ApiToken, LedgerAccount, Tenant, VoucherGrant

__all__ = ["router", "wallet_of"]

router = APIRouter(prefix="/v1", tags=["access"], responses=PROBLEM_RESPONSES)


@router.post("/tenants", status_code=201, response_model=TenantOut)
def post_tenant(body: TenantCreate, rt: Rt, _: Operator) -> TenantOut:
    """Create a tenant and its accounts; each account's token is shown once, here."""
    now = rt.clock.now()

    def run(session: Session) -> TenantOut:
        tenant, made = create_tenant(
            session, body.name, [(a.name, a.role) for a in body.accounts], now
        )
        out = TenantOut.model_validate(tenant)
        out.accounts = [
            AccountOut(id=a.id, tenant_id=a.tenant_id, name=a.name, role=a.role, token=t)
            for a, t in made
        ]
        return out

    return rt.db.transact(run)


@router.get("/tenants", response_model=list[TenantOut])
def list_tenants(rt: Rt, _: Operator, limit: Limit = 100, offset: Offset = 0) -> list[TenantOut]:
    with rt.db.read() as s:
        rows = s.scalars(select(Tenant).order_by(Tenant.created_at).limit(limit).offset(offset))
        return [TenantOut.model_validate(t) for t in rows]


@router.get("/tenants/{tenant_id}", response_model=TenantOut)
def get_tenant(tenant_id: PathId, rt: Rt, who: CurrentPrincipal) -> TenantOut:
    if not who.is_operator and tenant_id != who.tenant_id:
        raise NotFound(f"no tenant {tenant_id!r}")
    with rt.db.read() as s:
        tenant = s.get(Tenant, tenant_id)
        if tenant is None:
            raise NotFound(f"no tenant {tenant_id!r}")
        out = TenantOut.model_validate(tenant)
        out.accounts = [
            AccountOut.model_validate(a)
            for a in s.scalars(select(Account).where(Account.tenant_id == tenant_id))
        ]
        return out


@router.post("/tenants/{tenant_id}/accounts", status_code=201, response_model=AccountOut)
def post_account(tenant_id: PathId, body: AccountCreate, rt: Rt, _: Operator) -> AccountOut:
    """Add an account to a tenant; its token is shown once, here."""
    now = rt.clock.now()

    def run(session: Session) -> AccountOut:
        if session.get(Tenant, tenant_id) is None:
            raise NotFound(f"no tenant {tenant_id!r}")
        acc, token = create_account(session, tenant_id, body.name, body.role, now)
        out = AccountOut.model_validate(acc)
        out.token = token
        return out

    return rt.db.transact(run)


@router.get("/me", response_model=MeOut)
def get_me(rt: Rt, who: CurrentPrincipal) -> MeOut:
    with rt.db.read() as s:
        tenant = s.get(Tenant, who.tenant_id)
        return MeOut(
            account_id=who.account_id,
            account_name=who.name,
            tenant_id=who.tenant_id,
            tenant_name=tenant.name if tenant else "",
            role=who.role,
        )


@router.post("/tokens", status_code=201, response_model=TokenOut)
def post_token(body: TokenCreate, rt: Rt, who: CurrentPrincipal) -> TokenOut:
    """A new token for the caller's own account, shown once; optionally expiring after
    ``expires_in_days``. 409 once the account holds ``max_tokens_per_account`` live
    tokens: revoke some first."""
    now = rt.clock.now()
    days = body.expires_in_days
    expires_at = now + timedelta(days=days) if days is not None else None

    def run(session: Session) -> TokenOut:
        row, token = mint_token(
            session,
            who.account_id,
            now,
            body.label or "",
            expires_at,
            rt.settings.max_tokens_per_account,
        )
        out = TokenOut.model_validate(row)
        out.token = token
        return out

    return rt.db.transact(run)


@router.get("/tokens", response_model=list[TokenOut])
def list_tokens(rt: Rt, who: CurrentPrincipal) -> list[TokenOut]:
    """The caller's account's live tokens (neither revoked nor expired), oldest first;
    ``current`` marks the one this request was made with. Tokens themselves are never
    shown again."""
    with rt.db.read() as s:
        q = live_tokens(who.account_id, rt.clock.now()).order_by(ApiToken.created_at, ApiToken.id)
        out = [TokenOut.model_validate(r) for r in s.scalars(q)]
    for t in out:
        t.current = t.id == who.token_id
    return out


@router.delete("/tokens/{token_id}", status_code=204)
def revoke_token(token_id: PathId, rt: Rt, who: CurrentPrincipal) -> None:
    """Revoke one of the caller's own tokens (operators: anyone's); refused from the next
    request on."""
    now = rt.clock.now()

    def run(session: Session) -> None:
        row = session.get(ApiToken, token_id)
        if row is None or (row.account_id != who.account_id and not who.is_operator):
            raise NotFound(f"no token {token_id!r}")
        if row.revoked_at is None:
            row.revoked_at = now

    rt.db.transact(run)
    rt.tokens.drop_token(token_id)


def wallet_of(session: Session, tenant_id: str) -> WalletOut:
    ids = [wallet(tenant_id), escrow(tenant_id), receivable(tenant_id)]
    bal = {
        a.id: a.balance_fen
        for a in session.scalars(select(LedgerAccount).where(LedgerAccount.id.in_(ids)))
    }
    grants = list(session.scalars(select(VoucherGrant).where(VoucherGrant.tenant_id == tenant_id)))
    gbal = {
        a.id: a.balance_fen
        for a in session.scalars(
            select(LedgerAccount).where(
                LedgerAccount.id.in_([grant(g.program_id, tenant_id) for g in grants])
            )
        )
    }
    return WalletOut(
        tenant_id=tenant_id,
        wallet_fen=bal.get(ids[0], 0),
        escrow_fen=bal.get(ids[1], 0),
        receivable_fen=bal.get(ids[2], 0),
        grants=[
            GrantBalance(
                program_id=g.program_id,
                granted_fen=g.amount_fen,
                balance_fen=gbal.get(grant(g.program_id, tenant_id), 0),
            )
            for g in grants
        ],
    )


@router.get("/wallet", response_model=WalletOut)
def get_wallet(
    rt: Rt,
    who: CurrentPrincipal,
    tenant_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
) -> WalletOut:
    """Balances of the caller's tenant (operators: of ``tenant_id``), in fen."""
    target = tenant_id if (who.is_operator and tenant_id) else who.tenant_id
    with rt.db.read() as s:
        if s.get(Tenant, target) is None:
            raise NotFound(f"no tenant {target!r}")
        return wallet_of(s, target)


@router.post("/tenants/{tenant_id}/deposits", status_code=201, response_model=WalletOut)
def post_deposit(
    tenant_id: PathId,
    body: DepositCreate,
    request: Request,
    rt: Rt,
    who: Operator,
    key: IdempotencyKey = None,
) -> Response:
    """Credit a tenant's wallet (operators record money received from outside)."""

    def run(session: Session) -> tuple[int, WalletOut]:
        deposit(session, tenant_id, body.amount_fen, rt.clock.now(), body.memo)
        return 201, wallet_of(session, tenant_id)

    return run_idempotent(rt.db, who, key, "POST", request.url.path, body, rt.clock.now, run)
