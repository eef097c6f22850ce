"""The append-only event log: every state change, who made it, and why."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from suanli.service.tables import Event

__all__ = ["record_event"]


def record_event(
    session: Session,
    *,
    at: datetime,
    subject_kind: str,
    subject_id: str,
    kind: str,
    reason: str = "",
    tenant_id: str | None = None,
    actor: str | None = None,
    from_state: str | None = None,
    to_state: str | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    session.add(
        Event(
            at=at,
            tenant_id=tenant_id,
            actor=actor,
            subject_kind=subject_kind,
            subject_id=subject_id,
            kind=kind,
            from_state=from_state,
            to_state=to_state,
            reason=reason,
            data=data,
        )
    )
