"""Ending an allocation: meter what it delivered, capture that share, release the rest."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from suanli.market.decision import Payment
from suanli.service.ledger import bounded_capture, post, settle_entries
from suanli.service.tables import AllocationRow, UsageRow, new_id

__all__ = ["planned_payment", "settle_allocation"]


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
    start = alloc.started_at or alloc.placed_at
    usage = UsageRow(
        id=new_id("use"),
        allocation_id=alloc.id,
        kind=alloc.kind,
        item_id=alloc.item_id,
        buyer_tenant_id=alloc.buyer_tenant_id,
        seller_tenant_id=alloc.seller_tenant_id,
        pool_id=alloc.pool_id,
        from_at=start,
        to_at=start + timedelta(hours=delivered_h),
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
