"""FastAPI dependencies: the runtime, the caller, role checks, common parameters."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Header, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from suanli.service.auth import Principal, Role, bearer_token, hash_token, resolve_token
from suanli.service.idempotency import KEY_HEADER
from suanli.service.problems import Forbidden, TooManyRequests, Unauthorized
from suanli.service.ratelimit import RateLimits, account_key, address_key
from suanli.service.runtime import Runtime
from suanli.service.schemas.common import ID_PATTERN

__all__ = [
    "Buyer",
    "BuyerOnly",
    "CurrentPrincipal",
    "IdempotencyKey",
    "Limit",
    "Offset",
    "Operator",
    "PathId",
    "Rt",
    "Seller",
    "SellerOnly",
    "optional_principal",
    "require",
]

_bearer = HTTPBearer(auto_error=False, description="an API token: `Authorization: Bearer sl_…`")


def get_runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


Rt = Annotated[Runtime, Depends(get_runtime)]


def get_limits(request: Request) -> RateLimits:
    limits: RateLimits = request.app.state.limits
    return limits


def get_principal(
    rt: Rt,
    request: Request,
    # Declared for the OpenAPI security scheme; the header is parsed by ``bearer_token``,
    # the same way the rate limiter at the edge reads it.
    _creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    header = request.headers.get("authorization")
    token = bearer_token(header) if header else None
    if token is None:
        raise Unauthorized(
            "send an API token: Authorization: Bearer <token>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    limits = get_limits(request)
    host = request.client.host if request.client else "?"
    if len(token) > 200 or not token.isascii():
        limits.auth_failures.take(address_key(host))
        raise Unauthorized("malformed token", headers={"WWW-Authenticate": "Bearer"})
    digest = hash_token(token)
    principal = rt.tokens.get(digest)
    if principal is None or not principal.live_at(rt.clock.now()):
        principal = _look_up(rt, limits, token, digest, host)
    request.state.principal = principal
    return principal


def _look_up(rt: Runtime, limits: RateLimits, token: str, digest: str, host: str) -> Principal:
    """A token the cache did not know: one database lookup (a miss is cached too), every
    failure spent from the address's budget."""
    try:
        if rt.tokens.is_unknown(digest):
            raise Unauthorized(
                "unknown, revoked or expired token", headers={"WWW-Authenticate": "Bearer"}
            )
        with rt.db.read() as session:
            principal = resolve_token(session, token, rt.clock.now())
    except Unauthorized:
        rt.tokens.put_unknown(digest)
        limits.auth_failures.take(address_key(host))
        raise
    rt.tokens.put(digest, principal)
    # The edge charged this request to the address, not knowing the token yet; charge the
    # account as well, so that every request it makes counts against its own budget.
    wait_s = limits.requests.take(account_key(principal.account_id))
    if wait_s > 0:
        raise TooManyRequests(
            f"rate limit of {limits.requests.rate:g} requests/s exceeded; retry in {wait_s:.2f} s",
            headers={"Retry-After": str(max(1, round(wait_s + 0.5)))},
        )
    return principal


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


def optional_principal(
    rt: Rt,
    request: Request,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal | None:
    """None for a request without ``Authorization``; else as ``get_principal`` (so a
    token that is sent must be valid)."""
    if request.headers.get("authorization") is None:
        return None
    return get_principal(rt, request, creds)


def require(*roles: Role, operator_ok: bool = True) -> Callable[[Principal], Principal]:
    """A dependency that lets only ``roles`` through (and operators, if ``operator_ok``)."""

    def check(principal: CurrentPrincipal) -> Principal:
        if principal.role in roles:
            return principal
        if principal.role is not Role.OPERATOR or not operator_ok:
            allowed = " or ".join(r.value for r in roles) or "operator"
            raise Forbidden(f"this needs the {allowed} role; your token is a {principal.role}")
        return principal

    return check


Buyer = Annotated[Principal, Depends(require(Role.BUYER))]
BuyerOnly = Annotated[Principal, Depends(require(Role.BUYER, operator_ok=False))]
Seller = Annotated[Principal, Depends(require(Role.SELLER))]
SellerOnly = Annotated[Principal, Depends(require(Role.SELLER, operator_ok=False))]
Operator = Annotated[Principal, Depends(require())]

PathId = Annotated[str, Path(pattern=ID_PATTERN, max_length=80)]
Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0, le=1_000_000)]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias=KEY_HEADER,
        description="required: a unique string per intended operation; retries reuse it",
    ),
]
