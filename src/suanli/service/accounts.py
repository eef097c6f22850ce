"""Tenants, accounts, tokens and deposits; the first operator on an empty exchange."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session

from suanli.service.auth import Role, hash_token, new_token
from suanli.service.ledger import FEE, WORLD, escrow, open_accounts, post, receivable, wallet
from suanli.service.problems import Conflict, NotFound
from suanli.service.tables import Account, ApiToken, LedgerAccount, Tenant, new_id

__all__ = [
    "bootstrap_operator",
    "create_account",
    "create_tenant",
    "deposit",
    "ensure_system_accounts",
    "issue_token",
    "live_tokens",
    "mint_token",
]


def ensure_system_accounts(session: Session, now: datetime) -> None:
    open_accounts(session, [WORLD, FEE], now)


def issue_token(
    session: Session,
    account_id: str,
    now: datetime,
    label: str = "",
    *,
    expires_at: datetime | None = None,
) -> tuple[ApiToken, str]:
    """A new token for ``account_id``; the plain token is returned once and never stored."""
    token = new_token()
    row = ApiToken(
        id=new_id("tok"),
        account_id=account_id,
        token_hash=hash_token(token),
        prefix=token[:8],
        label=label,
        created_at=now,
        expires_at=expires_at,
    )
    session.add(row)
    return row, token


def live_tokens(account_id: str, now: datetime) -> Select[ApiToken]:
    """The query of ``account_id``'s live tokens: neither revoked nor expired at ``now``."""
    return select(ApiToken).where(
        ApiToken.account_id == account_id,
        ApiToken.revoked_at.is_(None),
        or_(ApiToken.expires_at.is_(None), ApiToken.expires_at > now),
    )


def mint_token(
    session: Session,
    account_id: str,
    now: datetime,
    label: str,
    expires_at: datetime | None,
    max_live: int,
) -> tuple[ApiToken, str]:
    """A token an account asked for itself, while it holds fewer than ``max_live`` live
    tokens (Conflict otherwise). The account's row is locked first, so racing requests
    are counted one after another and cannot pass the cap together."""
    session.get(Account, account_id, with_for_update=True)
    live = session.scalar(select(func.count()).select_from(live_tokens(account_id, now).subquery()))
    if (live or 0) >= max_live:
        raise Conflict(
            f"this account holds {live} live API tokens, the most allowed "
            f"(max_tokens_per_account = {max_live}): revoke some first — "
            "`suanli tokens list`, then `suanli tokens revoke TOKEN_ID` "
            "(DELETE /v1/tokens/{token_id})"
        )
    return issue_token(session, account_id, now, label, expires_at=expires_at)


def create_account(
    session: Session, tenant_id: str, name: str, role: Role, now: datetime
) -> tuple[Account, str]:
    if session.scalars(
        select(Account).where(Account.tenant_id == tenant_id, Account.name == name)
    ).first():
        raise Conflict(f"tenant {tenant_id} already has an account named {name!r}")
    acc = Account(
        id=new_id("acct"), tenant_id=tenant_id, name=name, role=role.value, created_at=now
    )
    session.add(acc)
    session.flush()
    _, token = issue_token(session, acc.id, now, label="created with the account")
    return acc, token


def create_tenant(
    session: Session, name: str, accounts: Sequence[tuple[str, Role]], now: datetime
) -> tuple[Tenant, list[tuple[Account, str]]]:
    """A tenant with its ledger accounts and the given accounts (each with a token)."""
    if session.scalars(select(Tenant).where(Tenant.name == name)).first():
        raise Conflict(f"a tenant named {name!r} exists already")
    tenant = Tenant(id=new_id("t"), name=name, created_at=now)
    session.add(tenant)
    session.flush()
    open_accounts(
        session,
        [wallet(tenant.id), escrow(tenant.id), receivable(tenant.id)],
        now,
        owner_id=tenant.id,
    )
    made = [create_account(session, tenant.id, n, r, now) for n, r in accounts]
    return tenant, made


def deposit(
    session: Session, tenant_id: str, amount_fen: int, now: datetime, memo: str = ""
) -> int:
    """Credit a tenant's wallet from outside money; returns the new balance in fen."""
    if session.get(Tenant, tenant_id) is None:
        raise NotFound(f"no tenant {tenant_id!r}")
    post(
        session,
        "deposit",
        [(WORLD, -amount_fen), (wallet(tenant_id), amount_fen)],
        now,
        ref=tenant_id,
        memo=memo or "deposit",
    )
    acc = session.get(LedgerAccount, wallet(tenant_id))
    assert acc is not None
    return acc.balance_fen


def bootstrap_operator(session: Session, now: datetime) -> str | None:
    """On an exchange with no operator: create one and return its token (shown once)."""
    ensure_system_accounts(session, now)
    if session.scalars(select(Account).where(Account.role == Role.OPERATOR.value)).first():
        return None
    _, made = create_tenant(session, "operator", [("admin", Role.OPERATOR)], now)
    return made[0][1]
