"""Ending an allocation: meter what it delivered, capture that share, release the rest.

What a site reports is bounded by what the exchange saw: a report of more GPU time than
``gpus × (now − seen start) + REPORT_TOLERANCE_S per GPU`` is refused
(:class:`ImpossibleReport`), and no more than ``gpus × (now − seen start)`` is ever billed
from a report, so a usage record never ends after the moment it was settled.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from suanli.market.decision import Payment
from suanli.service.ledger import bounded_capture, post, settle_entries
from suanli.service.problems import FieldError, Unprocessable
from suanli.service.tables import AllocationRow, UsageRow, new_id

__all__ = [
    "REPORT_TOLERANCE_S",
    "ImpossibleReport",
    "planned_payment",
    "reported_hours",
    "seen_start",
    "settle_allocation",
]

# Per GPU, a report may claim this much more time than the exchange saw before it is
# refused: the site's and the exchange's clocks tick at slightly different rates and may
# be stepped, and a report spends time in flight. Billing never goes past what was seen.
REPORT_TOLERANCE_S = 60.0


class ImpossibleReport(Unprocessable):
    """A site reported more GPU time than could have passed (422 ``impossible-report``).

    ``event`` holds the fields of the event that logs the refusal; the caller records it
    in a transaction of its own, since the report's transaction is rolled back.
    """

    slug, title = "impossible-report", "Impossible usage report"

    def __init__(self, detail: str, *, errors: list[FieldError], event: dict[str, Any]) -> None:
        super().__init__(detail, errors=errors)
        self.event = event


def seen_start(alloc: AllocationRow) -> datetime:
    """The earliest moment the exchange saw that this work could have started.

    When its lease was handed out, for leased work: no agent can start work before it
    holds the lease. (Not the ``running`` report: an agent's reports wait in its outbox
    while the exchange is unreachable, so an honest ``running`` may arrive long after the
    work started.) For work reported by job id without a lease, the accepted ``running``
    report; for work never leased nor started, its placement.
    """
    return alloc.leased_at or alloc.started_at or alloc.placed_at


def reported_hours(
    alloc: AllocationRow, gpu_hours: float, now: datetime, *, state: str, actor: str
) -> float:
    """Hours per GPU to bill for a report of ``gpu_hours``: at most the hours the exchange
    saw since :func:`seen_start`. ImpossibleReport when ``gpu_hours`` passes
    ``gpus × (seen + REPORT_TOLERANCE_S)``."""
    gpus = max(1, alloc.gpus)
    seen_s = max(0.0, (now - seen_start(alloc)).total_seconds())
    bound_gpu_h = gpus * (seen_s + REPORT_TOLERANCE_S) / 3600.0
    if gpu_hours <= bound_gpu_h:
        return min(gpu_hours / gpus, seen_s / 3600.0)
    why = (
        f"at most {bound_gpu_h:.4f} GPU-hours could have passed: {gpus} GPUs × "
        f"({seen_s:.0f} s since {seen_start(alloc).isoformat()} + {REPORT_TOLERANCE_S:.0f} s "
        "of tolerance)"
    )
    raise ImpossibleReport(
        f"allocation {alloc.id} reported {gpu_hours:g} GPU-hours, but {why}; the report "
        "is refused, nothing is billed, and the refusal is logged",
        errors=[FieldError(field="body.gpu_hours", reason=why)],
        event={
            "at": now,
            "subject_kind": "allocation",
            "subject_id": alloc.id,
            "kind": "report-refused",
            "tenant_id": alloc.seller_tenant_id,
            "actor": actor,
            "to_state": state,
            "reason": f"reported {gpu_hours:g} GPU-hours; {why}",
            "data": {
                f"{'job' if alloc.kind == 'job' else 'service'}_id": alloc.item_id,
                "gpu_hours": gpu_hours,
                "bound_gpu_hours": bound_gpu_h,
                "seen_s": seen_s,
                "tolerance_s": REPORT_TOLERANCE_S,
            },
        },
    )


def planned_payment(alloc: AllocationRow) -> Payment:
    return Payment(
        buyer_fen=alloc.buyer_fen,
        voucher_fen=alloc.voucher_fen,
        seller_fen=alloc.seller_fen,
        fee_fen=alloc.fee_fen,
        voucher_id=alloc.voucher_program_id,
    )


def settle_allocation(
    session: Session,
    alloc: AllocationRow,
    now: datetime,
    delivered_h: float,
    *,
    exit_code: int | None = None,
) -> UsageRow:
    """Free ``alloc``: bill ``delivered_h`` hours of its GPUs (at most the plan), once.

    The usage record's unique allocation id makes a second settlement fail instead of
    billing twice.
    """
    if not alloc.active:
        raise ValueError(f"allocation {alloc.id} was already settled")
    delivered_h = min(max(0.0, delivered_h), alloc.planned_h)
    share = delivered_h / alloc.planned_h if alloc.planned_h > 0 else 0.0
    planned = planned_payment(alloc)
    captured = bounded_capture(planned, share)
    post(
        session,
        "settle",
        settle_entries(alloc.buyer_tenant_id, alloc.seller_tenant_id, planned, captured),
        now,
        ref=alloc.id,
        memo=f"{alloc.kind} {alloc.item_id}: {delivered_h:.4f} of {alloc.planned_h:.4f} h",
    )
    # The record spans the delivered time and ends by ``now``: time reported beyond the
    # accepted start (a late ``running``) is placed before it, never after ``now``.
    start = alloc.started_at or alloc.placed_at
    to_at = min(now, start + timedelta(hours=delivered_h))
    from_at = min(start, to_at - timedelta(hours=delivered_h))
    usage = UsageRow(
        id=new_id("use"),
        allocation_id=alloc.id,
        kind=alloc.kind,
        item_id=alloc.item_id,
        buyer_tenant_id=alloc.buyer_tenant_id,
        seller_tenant_id=alloc.seller_tenant_id,
        pool_id=alloc.pool_id,
        from_at=from_at,
        to_at=to_at,
        gpu_hours=delivered_h * alloc.gpus,
        buyer_fen=captured.buyer_fen,
        voucher_fen=captured.voucher_fen,
        seller_fen=captured.seller_fen,
        fee_fen=captured.fee_fen,
        voucher_program_id=captured.voucher_id,
        exit_code=exit_code,
        created_at=now,
    )
    session.add(usage)
    alloc.active = False
    alloc.released_at = now
    return usage
