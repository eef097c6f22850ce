"""FastAPI dependencies: the runtime, the caller, role checks, common parameters."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Header, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from suanli.service.auth import Principal, Role, hash_token, resolve_token
from suanli.service.idempotency import KEY_HEADER
from suanli.service.problems import Forbidden, Unauthorized
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
    "require",
]

_bearer = HTTPBearer(auto_error=False, description="an API token: `Authorization: Bearer sl_…`")


def get_runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


Rt = Annotated[Runtime, Depends(get_runtime)]


def get_principal(
    rt: Rt,
    request: Request,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if creds is None or creds.scheme.lower() != "bearer" or not creds.credentials:
        raise Unauthorized(
            "send an API token: Authorization: Bearer <token>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    token = creds.credentials
    if len(token) > 200 or not token.isascii():
        raise Unauthorized("malformed token", headers={"WWW-Authenticate": "Bearer"})
    digest = hash_token(token)
    principal = rt.tokens.get(digest)
    if principal is None:
        with rt.db.read() as session:
            principal = resolve_token(session, token)
        rt.tokens.put(digest, principal)
    request.state.principal = principal
    return principal


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


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
