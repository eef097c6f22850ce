"""Bearer tokens and roles. Tokens are random, shown once, stored as SHA-256 digests.

Roles: ``buyer`` submits work and pays; ``seller`` publishes sites, pools, offers and
reports on the work it runs; ``operator`` runs the exchange (tenants, deposits, voucher
programs) and may read everything. Everything else is scoped to the caller's tenant.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from suanli.service.problems import Unauthorized
from suanli.service.tables import Account, ApiToken

__all__ = ["Principal", "Role", "TokenCache", "hash_token", "new_token", "resolve_token"]

TOKEN_PREFIX = "sl_"


class Role(StrEnum):
    BUYER = "buyer"
    SELLER = "seller"
    OPERATOR = "operator"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: one account of one tenant, with one role."""

    account_id: str
    tenant_id: str
    role: Role
    name: str
    token_id: str

    @property
    def is_operator(self) -> bool:
        return self.role is Role.OPERATOR


def new_token() -> str:
    """A fresh bearer token (256 random bits)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    # Tokens carry 256 random bits, so a fast digest is safe; no salt or KDF needed.
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class TokenCache:
    """Token digest → principal for a few seconds, so a request costs no extra query.

    Revocation clears the entry in this process; other processes see it within
    ``ttl_s``.
    """

    def __init__(self, ttl_s: float = 5.0) -> None:
        self.ttl_s = ttl_s
        self._entries: dict[str, tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    def get(self, digest: str) -> Principal | None:
        with self._lock:
            hit = self._entries.get(digest)
            if hit is None or hit[0] < time.monotonic():
                return None
            return hit[1]

    def put(self, digest: str, principal: Principal) -> None:
        with self._lock:
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[digest] = (time.monotonic() + self.ttl_s, principal)

    def drop_token(self, token_id: str) -> None:
        with self._lock:
            for k in [k for k, (_, p) in self._entries.items() if p.token_id == token_id]:
                del self._entries[k]


def resolve_token(session: Session, token: str) -> Principal:
    """The principal a live token belongs to; Unauthorized otherwise."""
    row = session.execute(
        select(ApiToken, Account)
        .join(Account, Account.id == ApiToken.account_id)
        .where(ApiToken.token_hash == hash_token(token), ApiToken.revoked_at.is_(None))
    ).first()
    if row is None:
        raise Unauthorized("unknown or revoked token", headers={"WWW-Authenticate": "Bearer"})
    tok, acc = row
    return Principal(
        account_id=acc.id,
        tenant_id=acc.tenant_id,
        role=Role(acc.role),
        name=acc.name,
        token_id=tok.id,
    )
