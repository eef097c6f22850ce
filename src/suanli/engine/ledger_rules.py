"""Money for delivered GPU time: what a usage record captures from a placement's plan.

A placement's planned payment (from the clearing decision) is held when work is placed.
Delivered GPU time captures the share ``delivered / planned`` of each leg — buyer,
voucher, seller, fee — rounded to the fen so that the legs still balance; what is not
delivered is released. No leg's capture ever exceeds its hold.
"""

from __future__ import annotations

from suanli.market.decision import Payment

__all__ = ["capture_share"]


def capture_share(planned: Payment, share: float) -> Payment:
    """``share`` (clamped to [0, 1]) of a planned payment, legs balanced to the fen."""
    share = min(1.0, max(0.0, share))
    seller = round(planned.seller_fen * share)
    fee = round(planned.fee_fen * share)
    total = seller + fee  # ≤ planned total, so buyer and voucher holds can cover it
    voucher = min(round(planned.voucher_fen * share), total)
    buyer = total - voucher
    if buyer > planned.buyer_fen:  # rounding pushed the buyer past its hold: the voucher,
        buyer = planned.buyer_fen  # which has room (total ≤ buyer hold + voucher hold),
        voucher = total - buyer  # takes the fen
    return Payment(
        buyer_fen=buyer,
        voucher_fen=voucher,
        seller_fen=seller,
        fee_fen=fee,
        voucher_id=planned.voucher_id,
    )
