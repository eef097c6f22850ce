"""Idempotency-Key for every POST that creates work or moves money.

The key's record and the response are written in the same transaction as the
request's effects: of two concurrent twins one commits and the other fails on the key's
unique index, rolls back whole and reads the stored response; a retry after a failure
(which left no effect) runs again. A key reused with a different request is refused.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi.encoders import jsonable_encoder
from fastapi.responses import Response
from pydantic import BaseModel
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from suanli.service.auth import Principal
from suanli.service.db import Database
from suanli.service.problems import PreconditionRequired, Unprocessable
from suanli.service.tables import IdempotencyRecord

__all__ = ["KEY_HEADER", "run_idempotent"]

KEY_HEADER = "Idempotency-Key"
_KEY_RE = re.compile(r"^[\x21-\x7e]{1,200}$")


def _request_hash(method: str, path: str, body: Any) -> str:
    if isinstance(body, BaseModel):
        canon = body.model_dump_json()
    else:
        canon = json.dumps(jsonable_encoder(body), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{method} {path}\n{canon}".encode()).hexdigest()


def _dump(content: Any) -> str:
    if isinstance(content, BaseModel):
        return content.model_dump_json()
    return json.dumps(jsonable_encoder(content))


def run_idempotent(
    db: Database,
    principal: Principal,
    key: str | None,
    method: str,
    path: str,
    body: Any,
    now: Callable[[], datetime],
    fn: Callable[[Session], tuple[int, Any]],
) -> Response:
    """Run ``fn`` (returning status and a JSON-able body) once per (account, key)."""
    if key is None:
        raise PreconditionRequired(
            f"this request moves money or creates work: send an {KEY_HEADER} header "
            "(any unique string, e.g. a UUID) so that a retry cannot apply it twice"
        )
    if not _KEY_RE.fullmatch(key):
        raise Unprocessable(f"{KEY_HEADER} must be 1–200 printable ASCII characters")
    digest = _request_hash(method, path, body)

    def attempt(session: Session) -> tuple[int, str, bool]:
        found = session.execute(
            select(
                IdempotencyRecord.request_hash,
                IdempotencyRecord.status_code,
                IdempotencyRecord.response_json,
                IdempotencyRecord.method,
                IdempotencyRecord.path,
            ).where(
                IdempotencyRecord.account_id == principal.account_id,
                IdempotencyRecord.key == key,
            )
        ).first()
        if found is not None:
            if found.request_hash != digest:
                raise Unprocessable(
                    f"{KEY_HEADER} {key!r} was already used for a different request "
                    f"({found.method} {found.path}); use a new key"
                )
            return found.status_code, found.response_json, True
        status, content = fn(session)
        text = _dump(content)
        # A concurrent twin that got here first makes this insert fail on the unique
        # key: the whole transaction (effects included) rolls back and the retry below
        # reads the twin's response.
        session.execute(
            insert(IdempotencyRecord).values(
                account_id=principal.account_id,
                key=key,
                method=method,
                path=path[:300],
                request_hash=digest,
                status_code=status,
                response_json=text,
                created_at=now(),
            )
        )
        return status, text, False

    for tries in range(3):
        try:
            status, text, replayed = db.transact(attempt)
            break
        except IntegrityError:
            if tries == 2:
                raise
    headers = {"Idempotent-Replayed": "true"} if replayed else {}
    return Response(text, status_code=status, headers=headers, media_type="application/json")
