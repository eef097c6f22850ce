"""Ledger and billing invariants, checked from the rows (operators, tests, the demo).

- every transaction's entries sum to zero;
- every account's balance equals the sum of its entries and is at or above its floor;
- all balances together sum to zero (money only enters through ``world``);
- no voucher program has granted more than its budget;
- every allocation is settled at most once (one usage record), and captured ≤ held.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from suanli.service.ledger import voucher_fund
from suanli.service.tables import (
    AllocationRow,
    LedgerAccount,
    LedgerEntry,
    UsageRow,
    VoucherGrant,
    VoucherProgramRow,
)

__all__ = ["audit"]


def audit(session: Session) -> list[str]:
    """Every violated invariant, as a sentence; empty when the books are sound."""
    out: list[str] = []
    for txn_id, total in session.execute(
        select(LedgerEntry.txn_id, func.sum(LedgerEntry.amount_fen))
        .group_by(LedgerEntry.txn_id)
        .having(func.sum(LedgerEntry.amount_fen) != 0)
    ):
        out.append(f"transaction {txn_id} sums to {total} fen")
    sums = dict(
        session.execute(
            select(LedgerEntry.account_id, func.sum(LedgerEntry.amount_fen)).group_by(
                LedgerEntry.account_id
            )
        ).all()
    )
    total = 0
    for acc in session.scalars(select(LedgerAccount)):
        total += acc.balance_fen
        if int(sums.get(acc.id, 0) or 0) != acc.balance_fen:
            out.append(f"{acc.id}: balance {acc.balance_fen} ≠ entries {sums.get(acc.id, 0)}")
        if acc.floor_fen is not None and acc.balance_fen < acc.floor_fen:
            out.append(f"{acc.id}: balance {acc.balance_fen} below floor {acc.floor_fen}")
    if total != 0:
        out.append(f"balances sum to {total} fen, not 0")
    granted = dict(
        session.execute(
            select(VoucherGrant.program_id, func.sum(VoucherGrant.amount_fen)).group_by(
                VoucherGrant.program_id
            )
        ).all()
    )
    for prog in session.scalars(select(VoucherProgramRow)):
        g = int(granted.get(prog.id, 0) or 0)
        if g > prog.budget_fen:
            out.append(f"voucher {prog.id}: granted {g} > budget {prog.budget_fen}")
        fund = session.get(LedgerAccount, voucher_fund(prog.id))
        if fund is not None and fund.balance_fen != prog.budget_fen - g:
            out.append(f"voucher {prog.id}: fund {fund.balance_fen} ≠ budget − granted")
    for alloc_id, n in session.execute(
        select(UsageRow.allocation_id, func.count())
        .group_by(UsageRow.allocation_id)
        .having(func.count() > 1)
    ):
        out.append(f"allocation {alloc_id} billed {n} times")
    for use, alloc in session.execute(
        select(UsageRow, AllocationRow).join(
            AllocationRow, AllocationRow.id == UsageRow.allocation_id
        )
    ):
        if use.buyer_fen > alloc.buyer_fen or use.voucher_fen > alloc.voucher_fen:
            out.append(f"allocation {alloc.id}: captured more than it held")
        if use.buyer_fen + use.voucher_fen != use.seller_fen + use.fee_fen:
            out.append(f"usage {use.id}: legs do not balance")
        if alloc.active:
            out.append(f"allocation {alloc.id}: billed but still active")
    return out
