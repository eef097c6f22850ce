"""Money for delivered GPU time: what a usage record captures from a placement's plan.

A placement's planned payment (from the clearing decision) is held when work is placed.
Delivered GPU time captures the share ``delivered / planned`` of each leg — buyer,
voucher, seller, fee — rounded to the fen so that the legs still balance; what is not
delivered is released. Capture never exceeds the hold.
"""

from __future__ import annotations

from suanli.market.decision import Payment

__all__ = ["capture_share"]


def capture_share(planned: Payment, share: float) -> Payment:
    """``share`` (clamped to [0, 1]) of a planned payment, legs balanced to the fen."""
    share = min(1.0, max(0.0, share))
    seller = round(planned.seller_fen * share)
    fee = round(planned.fee_fen * share)
    voucher = min(round(planned.voucher_fen * share), seller + fee)
    return Payment(
        buyer_fen=seller + fee - voucher,
        voucher_fen=voucher,
        seller_fen=seller,
        fee_fen=fee,
        voucher_id=planned.voucher_id,
    )
