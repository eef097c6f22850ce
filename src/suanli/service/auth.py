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
from datetime import datetime
from enum import StrEnum

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from suanli.service.problems import Unauthorized
from suanli.service.tables import Account, ApiToken

__all__ = [
    "Principal",
    "Role",
    "TokenCache",
    "bearer_token",
    "hash_token",
    "new_token",
    "resolve_token",
]

TOKEN_PREFIX = "sl_"


class Role(StrEnum):
    BUYER = "buyer"
    SELLER = "seller"
    OPERATOR = "operator"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: one account of one tenant, with one role, by one token (which
    expires at ``expires_at``; None: never)."""

    account_id: str
    tenant_id: str
    role: Role
    name: str
    token_id: str
    expires_at: datetime | None = None

    @property
    def is_operator(self) -> bool:
        return self.role is Role.OPERATOR

    def live_at(self, now: datetime) -> bool:
        """False once the token has expired (a cached principal must not outlive it)."""
        return self.expires_at is None or now < self.expires_at


def new_token() -> str:
    """A fresh bearer token (256 random bits)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    # Tokens carry 256 random bits, so a fast digest is safe; no salt or KDF needed.
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def bearer_token(header: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, however the scheme is
    cased or spaced; None when the header is not a bearer credential."""
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


class TokenCache:
    """What this process remembers about presented tokens, so that a request costs no
    extra query:

    - token digest → principal, for ``ttl_s``;
    - digests the database did not know, for ``unknown_ttl_s`` (a flood of one bad token
      costs one lookup per ``unknown_ttl_s``; tokens are random, so a miss never becomes
      a real token later);
    - digests that were valid within ``recent_s``: the edge lets these through to a lookup
      even when their address has spent its failed-authentication budget, so a client
      behind the same address as an attacker keeps working.

    Revocation clears the entries in this process; other processes see it within
    ``ttl_s``.
    """

    def __init__(
        self, ttl_s: float = 5.0, unknown_ttl_s: float = 5.0, recent_s: float = 3600.0
    ) -> None:
        self.ttl_s = ttl_s
        self.unknown_ttl_s = unknown_ttl_s
        self.recent_s = recent_s
        # digest → (expiry on the monotonic clock, principal; None: the token is unknown)
        self._entries: dict[str, tuple[float, Principal | None]] = {}
        self._recent: dict[str, tuple[float, str]] = {}  # digest → (until, token id)
        self._lock = threading.Lock()

    def get(self, digest: str) -> Principal | None:
        """The cached principal of a token, or None (not cached, or unknown)."""
        with self._lock:
            hit = self._entries.get(digest)
        if hit is None or hit[0] < time.monotonic():
            return None
        return hit[1]

    def is_unknown(self, digest: str) -> bool:
        """True while the database's answer "no such live token" is cached."""
        with self._lock:
            hit = self._entries.get(digest)
        return hit is not None and hit[1] is None and hit[0] >= time.monotonic()

    def was_valid(self, digest: str) -> bool:
        """True if this token resolved to a principal within ``recent_s``."""
        with self._lock:
            hit = self._recent.get(digest)
        return hit is not None and hit[0] >= time.monotonic()

    def put(self, digest: str, principal: Principal) -> None:
        now = time.monotonic()
        with self._lock:
            self._bound()
            self._entries[digest] = (now + self.ttl_s, principal)
            self._recent[digest] = (now + self.recent_s, principal.token_id)

    def put_unknown(self, digest: str) -> None:
        with self._lock:
            self._bound()
            self._entries[digest] = (time.monotonic() + self.unknown_ttl_s, None)

    def drop_token(self, token_id: str) -> None:
        with self._lock:
            for k in [k for k, (_, tid) in self._recent.items() if tid == token_id]:
                del self._recent[k]
            for k in [
                k for k, (_, p) in self._entries.items() if p is not None and p.token_id == token_id
            ]:
                del self._entries[k]

    def _bound(self) -> None:
        # A flood of distinct tokens must not grow memory without bound; forgetting only
        # costs lookups (the failed-authentication budget limits those).
        if len(self._entries) > 10_000:
            self._entries.clear()
        if len(self._recent) > 100_000:
            self._recent.clear()


def resolve_token(session: Session, token: str, now: datetime) -> Principal:
    """The principal a live token belongs to (not revoked, not expired at ``now``);
    Unauthorized otherwise."""
    row = session.execute(
        select(ApiToken, Account)
        .join(Account, Account.id == ApiToken.account_id)
        .where(
            ApiToken.token_hash == hash_token(token),
            ApiToken.revoked_at.is_(None),
            or_(ApiToken.expires_at.is_(None), ApiToken.expires_at > now),
        )
    ).first()
    if row is None:
        raise Unauthorized(
            "unknown, revoked or expired token", headers={"WWW-Authenticate": "Bearer"}
        )
    tok, acc = row
    return Principal(
        account_id=acc.id,
        tenant_id=acc.tenant_id,
        role=Role(acc.role),
        name=acc.name,
        token_id=tok.id,
        expires_at=tok.expires_at,
    )
