"""Service owners' side of serving: inference keys for their users, token usage (JSON or
CSV, to re-bill those users) and measured traffic per demand city."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from suanli.service.auth import Principal
from suanli.service.deps import Buyer, IdempotencyKey, Limit, Offset, PathId, Rt
from suanli.service.idempotency import run_idempotent
from suanli.service.inference_keys import (
    create_key,
    owned_key,
    owned_service,
    revoke_key,
    with_secret,
)
from suanli.service.problems import PROBLEM_RESPONSES, Unprocessable
from suanli.service.runtime import Runtime
from suanli.service.schemas.common import ID_PATTERN
from suanli.service.schemas.serving import GroupBy, KeyCreate, KeyOut, TokenUsageOut, TrafficOut
from suanli.service.tables import InferenceKey
from suanli.service.token_usage import UsageFilter, service_traffic, sum_token_usage, usage_csv

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["serving"], responses=PROBLEM_RESPONSES)

IdFilter = Annotated[str | None, Query(pattern=ID_PATTERN)]
TimeFilter = Annotated[datetime | None, Query(description="ISO 8601; UTC when no offset")]
Revoked = Annotated[bool, Query(description="list revoked keys too")]


# ----- keys -------------------------------------------------------------------------------
@router.post("/services/{service_id}/keys", status_code=201, response_model=KeyOut)
def post_key(
    service_id: PathId,
    body: KeyCreate,
    request: Request,
    rt: Rt,
    who: Buyer,
    key: IdempotencyKey = None,
) -> Response:
    """A key for the users of one of your active services; ``key`` is shown in this
    answer only (stored as its SHA-256). Gateways accept it at once."""
    minted: list[str] = []

    def run(session: Session) -> tuple[int, KeyOut]:
        svc = owned_service(session, service_id, who)
        fields: dict[str, object] = body.model_dump()
        row, secret = create_key(session, svc, fields, rt.clock.now(), who.account_id)
        minted[:] = [secret]  # only the attempt that commits is the one answered fresh
        return 201, KeyOut.model_validate(row)

    resp = run_idempotent(rt.db, who, key, "POST", request.url.path, body, rt.clock.now, run)
    out = with_secret(resp, minted[0] if minted else None)
    if out is not resp:
        rt.serving_changes.bump()
    return out


def _keys(
    rt: Runtime, who: Principal, service_id: str | None, revoked: bool, limit: int, offset: int
) -> list[KeyOut]:
    with rt.db.read() as s:
        q = select(InferenceKey).order_by(InferenceKey.created_at, InferenceKey.id)
        if service_id is not None:
            q = q.where(InferenceKey.service_id == owned_service(s, service_id, who).id)
        if not who.is_operator:
            q = q.where(InferenceKey.tenant_id == who.tenant_id)
        if not revoked:
            q = q.where(InferenceKey.revoked_at.is_(None))
        return [KeyOut.model_validate(k) for k in s.scalars(q.limit(limit).offset(offset))]


@router.get("/services/{service_id}/keys", response_model=list[KeyOut])
def list_service_keys(
    service_id: PathId,
    rt: Rt,
    who: Buyer,
    include_revoked: Revoked = False,
    limit: Limit = 1000,
    offset: Offset = 0,
) -> list[KeyOut]:
    """The keys of one of your services, oldest first (never the keys themselves)."""
    return _keys(rt, who, service_id, include_revoked, limit, offset)


@router.get("/keys", response_model=list[KeyOut])
def list_keys(
    rt: Rt,
    who: Buyer,
    service_id: IdFilter = None,
    include_revoked: Revoked = False,
    limit: Limit = 1000,
    offset: Offset = 0,
) -> list[KeyOut]:
    """Your keys over all your services (operators: everyone's), oldest first."""
    return _keys(rt, who, service_id, include_revoked, limit, offset)


@router.delete("/keys/{key_id}", status_code=204)
def delete_key(key_id: PathId, rt: Rt, who: Buyer) -> None:
    """Revoke a key: gateways refuse it from their next state update, which this wakes at
    once. Revoking a revoked key changes nothing (204 again)."""
    now = rt.clock.now()

    def run(session: Session) -> bool:
        return revoke_key(session, owned_key(session, key_id, who), now, who.account_id)

    if rt.db.transact(run):
        rt.serving_changes.bump()


# ----- usage and traffic ------------------------------------------------------------------
def _utc(value: datetime | None, field: str) -> datetime | None:
    if value is None:
        return None
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if not 2000 <= value.year <= 2200:
        raise Unprocessable(f"{field} must be between the years 2000 and 2200")
    return value


@router.get(
    "/token-usage",
    response_model=list[TokenUsageOut],
    responses={200: {"content": {"text/csv": {}}, "description": "JSON, or CSV on request"}},
)
def get_token_usage(
    request: Request,
    rt: Rt,
    who: Buyer,
    service_id: IdFilter = None,
    key_id: IdFilter = None,
    since: TimeFilter = None,
    until: TimeFilter = None,
    group_by: GroupBy = "service",
    fmt: Annotated[Literal["json", "csv"], Query(alias="format")] = "json",
    tenant_id: IdFilter = None,
) -> list[TokenUsageOut] | Response:
    """Tokens your services served, summed per service, key, city or UTC day over usage
    windows ending in ``[since, until)``; ``format=csv`` (or ``Accept: text/csv``) answers
    CSV. ``value_cny`` prices them at your own bids, for re-billing your users.
    Operators see every tenant's, or ``tenant_id``'s."""
    f = UsageFilter(
        tenant_id=(tenant_id if who.is_operator else who.tenant_id),
        service_id=service_id,
        key_id=key_id,
        since=_utc(since, "since"),
        until=_utc(until, "until"),
    )
    if f.since and f.until and f.until <= f.since:
        raise Unprocessable("until must be after since")
    with rt.db.read() as s:
        if service_id is not None:
            owned_service(s, service_id, who)
        if key_id is not None:
            owned_key(s, key_id, who)
        rows = sum_token_usage(s, f, group_by)
    if fmt == "csv" or "text/csv" in request.headers.get("accept", ""):
        return Response(
            usage_csv(rows, group_by),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="token-usage-{group_by}.csv"'},
        )
    return rows


@router.get("/services/{service_id}/traffic", response_model=TrafficOut)
def get_traffic(
    service_id: PathId,
    rt: Rt,
    who: Buyer,
    minutes: Annotated[int, Query(ge=1, le=10_080)] = 60,
) -> TrafficOut:
    """Measured traffic per demand city over the last ``minutes`` (requests, requests/s,
    tokens, SLO attainment, 429s) beside the demand the last round planned for, and
    where the running replicas serve from."""
    with rt.db.read() as s:
        svc = owned_service(s, service_id, who)
        return service_traffic(s, svc, minutes, rt.clock.now())
