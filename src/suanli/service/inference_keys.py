"""Inference keys: what a service's owner hands its own users to call the service through
the gateways.

A key is random, shown once and stored as its SHA-256 (the digest is all gateways ever
see). Creating one goes through the Idempotency-Key machinery so a retried create mints
no second key; the stored answer leaves the key out, so no secret rests in the database
in any form — a replayed answer therefore says which key was made, not what it is.
"""

from __future__ import annotations

import json
import secrets
from datetime import datetime

from fastapi.responses import Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from suanli.service.auth import Principal, hash_token
from suanli.service.events import record_event
from suanli.service.problems import Conflict, NotFound
from suanli.service.tables import InferenceKey, ServiceRow, new_id

__all__ = [
    "KEY_PREFIX",
    "MAX_LIVE_KEYS_PER_SERVICE",
    "create_key",
    "new_key",
    "owned_key",
    "owned_service",
    "revoke_key",
    "with_secret",
]

KEY_PREFIX = "sk-suanli-"
PREFIX_CHARS = 16
# Far more than an owner hands out by hand; bounds what every gateway must hold.
MAX_LIVE_KEYS_PER_SERVICE = 1000


def new_key() -> str:
    """``sk-suanli-`` and 40 URL-safe random characters (240 bits)."""
    return KEY_PREFIX + secrets.token_urlsafe(30)


def owned_service(session: Session, service_id: str, who: Principal) -> ServiceRow:
    """The caller's service (operators: anyone's); 404 for another tenant's, so that ids
    of others' services are not confirmed."""
    row = session.get(ServiceRow, service_id)
    if row is None or (not who.is_operator and row.tenant_id != who.tenant_id):
        raise NotFound(f"no service {service_id!r}")
    return row


def owned_key(session: Session, key_id: str, who: Principal) -> InferenceKey:
    row = session.get(InferenceKey, key_id)
    if row is None or (not who.is_operator and row.tenant_id != who.tenant_id):
        raise NotFound(f"no inference key {key_id!r}")
    return row


def create_key(
    session: Session,
    service: ServiceRow,
    fields: dict[str, object],
    now: datetime,
    actor: str,
) -> tuple[InferenceKey, str]:
    """A new key for an active ``service`` (409 when stopped or holding too many live
    keys); ``fields`` are name, rpm and tokens_per_day. Returns the row and the key."""
    if service.state != "active":
        raise Conflict(f"service {service.id} is {service.state}: keys are for active services")
    live = session.scalar(
        select(func.count())
        .select_from(InferenceKey)
        .where(InferenceKey.service_id == service.id, InferenceKey.revoked_at.is_(None))
    )
    if int(live or 0) >= MAX_LIVE_KEYS_PER_SERVICE:
        raise Conflict(
            f"service {service.id} holds {MAX_LIVE_KEYS_PER_SERVICE} live keys: revoke some first"
        )
    key = new_key()
    row = InferenceKey(
        id=new_id("key"),
        tenant_id=service.tenant_id,
        service_id=service.id,
        key_hash=hash_token(key),
        prefix=key[:PREFIX_CHARS],
        created_at=now,
        revoked_at=None,
        **fields,
    )
    session.add(row)
    record_event(
        session,
        at=now,
        subject_kind="inference_key",
        subject_id=row.id,
        kind="created",
        tenant_id=service.tenant_id,
        actor=actor,
        reason=f"key {row.name!r} for service {service.id}",
        data={"service_id": service.id, "rpm": row.rpm, "tokens_per_day": row.tokens_per_day},
    )
    session.flush()
    return row, key


def revoke_key(session: Session, row: InferenceKey, now: datetime, actor: str) -> bool:
    """Revoke ``row`` (True), or nothing when it already is (False): revoking is
    idempotent, and the first revocation's time and event stand."""
    if row.revoked_at is not None:
        return False
    row.revoked_at = now
    record_event(
        session,
        at=now,
        subject_kind="inference_key",
        subject_id=row.id,
        kind="revoked",
        tenant_id=row.tenant_id,
        actor=actor,
        reason=f"key {row.name!r} of service {row.service_id} revoked",
        data={"service_id": row.service_id},
    )
    return True


def with_secret(response: Response, key: str | None) -> Response:
    """``response`` (a fresh idempotent answer) with the key added; a replayed answer is
    returned as stored, without it."""
    if key is None or response.headers.get("Idempotent-Replayed") == "true":
        return response
    body = json.loads(bytes(response.body))
    body["key"] = key
    return Response(
        json.dumps(body), status_code=response.status_code, media_type="application/json"
    )
