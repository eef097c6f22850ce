"""Double-entry postings in integer fen (account layout in ``tables.money``).

:func:`post` is the only way money moves: entries are netted per account, must sum to
zero, and may not take any account below its floor. Rows are locked in id order
(``SELECT … FOR UPDATE`` on PostgreSQL; SQLite writes are serialized), so concurrent
postings neither deadlock on each other nor overdraw.

Helpers name the accounts and build the postings of the work lifecycle:

- hold (work placed): wallet → escrow, grant → voucher escrow;
- settle (work ended): escrow and voucher escrow → seller receivable and platform fee for
  the delivered share, the rest back to the wallet and the grant.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from suanli.engine.ledger_rules import capture_share
from suanli.market.decision import Payment
from suanli.service.problems import InsufficientFunds
from suanli.service.tables import LedgerAccount, LedgerEntry, LedgerTransaction

__all__ = [
    "FEE",
    "WORLD",
    "LedgerImbalance",
    "bounded_capture",
    "escrow",
    "grant",
    "hold_entries",
    "open_accounts",
    "post",
    "post_many",
    "receivable",
    "settle_entries",
    "voucher_escrow",
    "voucher_fund",
    "wallet",
]

WORLD = "world"
FEE = "platform:fee"


def wallet(tenant_id: str) -> str:
    return f"wallet:{tenant_id}"


def escrow(tenant_id: str) -> str:
    return f"escrow:{tenant_id}"


def receivable(tenant_id: str) -> str:
    return f"receivable:{tenant_id}"


def voucher_fund(program_id: str) -> str:
    return f"voucher:{program_id}"


def voucher_escrow(program_id: str) -> str:
    return f"voucher-escrow:{program_id}"


def grant(program_id: str, tenant_id: str) -> str:
    return f"grant:{program_id}:{tenant_id}"


class LedgerImbalance(ValueError):
    """A posting whose entries do not sum to zero: a bug, never a user error."""


def open_accounts(
    session: Session, ids: Iterable[str], now: datetime, *, owner_id: str | None = None
) -> None:
    """Create ledger accounts that do not exist yet (floor 0; ``world`` has none)."""
    wanted = list(dict.fromkeys(ids))
    have = set(session.scalars(select(LedgerAccount.id).where(LedgerAccount.id.in_(wanted))))
    for acc_id in wanted:
        if acc_id in have:
            continue
        session.add(
            LedgerAccount(
                id=acc_id,
                kind=acc_id.split(":", 1)[0],
                owner_id=owner_id,
                floor_fen=None if acc_id == WORLD else 0,
                balance_fen=0,
                created_at=now,
            )
        )
    session.flush()


def post(
    session: Session,
    kind: str,
    entries: Sequence[tuple[str, int]],
    now: datetime,
    *,
    ref: str | None = None,
    memo: str = "",
) -> int | None:
    """Post one balanced transaction; returns its id (None if every entry nets to zero).

    Raises InsufficientFunds if an account would go below its floor (nothing is posted),
    LedgerImbalance if the entries do not sum to zero.
    """
    net: dict[str, int] = defaultdict(int)
    for acc_id, amount in entries:
        net[acc_id] += int(amount)
    if sum(net.values()) != 0:
        raise LedgerImbalance(f"{kind} {ref}: entries sum to {sum(net.values())} fen, not 0")
    moves = {k: v for k, v in net.items() if v != 0}
    if not moves:
        return None
    ids = sorted(moves)
    accounts = {
        a.id: a
        for a in session.scalars(
            select(LedgerAccount)
            .where(LedgerAccount.id.in_(ids))
            .order_by(LedgerAccount.id)
            .with_for_update()
        )
    }
    missing = [i for i in ids if i not in accounts]
    if missing:
        raise LookupError(f"ledger accounts missing: {', '.join(missing)}")
    for acc_id in ids:
        acc = accounts[acc_id]
        after = acc.balance_fen + moves[acc_id]
        if acc.floor_fen is not None and after < acc.floor_fen:
            raise InsufficientFunds(
                f"{acc_id} holds {acc.balance_fen / 100:.2f} yuan; "
                f"{-moves[acc_id] / 100:.2f} yuan needed"
            )
    txn = LedgerTransaction(kind=kind, ref=ref, memo=memo[:300], created_at=now)
    session.add(txn)
    session.flush()
    for acc_id in ids:
        accounts[acc_id].balance_fen += moves[acc_id]
        session.add(LedgerEntry(txn_id=txn.id, account_id=acc_id, amount_fen=moves[acc_id]))
    return txn.id


def post_many(
    session: Session,
    kind: str,
    postings: Sequence[tuple[str, Sequence[tuple[str, int]]]],
    now: datetime,
) -> list[bool]:
    """Post many balanced transactions (``(ref, entries)``) with one lock and bulk writes.

    Postings are taken in order; one that would take an account below its floor is
    skipped (False) and leaves no trace. Accounts are locked once, in id order.
    """
    nets: list[dict[str, int]] = []
    for ref, entries in postings:
        net: dict[str, int] = defaultdict(int)
        for acc_id, amount in entries:
            net[acc_id] += int(amount)
        if sum(net.values()) != 0:
            raise LedgerImbalance(f"{kind} {ref}: entries sum to {sum(net.values())} fen, not 0")
        nets.append({k: v for k, v in net.items() if v})
    ids = sorted({a for n in nets for a in n})
    if not ids:
        return [True] * len(postings)
    rows = session.execute(
        select(LedgerAccount.id, LedgerAccount.balance_fen, LedgerAccount.floor_fen)
        .where(LedgerAccount.id.in_(ids))
        .order_by(LedgerAccount.id)
        .with_for_update()
    ).all()
    balance = {r.id: r.balance_fen for r in rows}
    floor = {r.id: r.floor_fen for r in rows}
    missing = [i for i in ids if i not in balance]
    if missing:
        raise LookupError(f"ledger accounts missing: {', '.join(missing)}")
    accepted: list[bool] = []
    for net in nets:
        ok = all(floor[a] is None or balance[a] + m >= floor[a] for a, m in net.items())
        if ok:
            for a, m in net.items():
                balance[a] += m
        accepted.append(ok)
    taken = [(ref, net) for (ref, _), net, ok in zip(postings, nets, accepted, strict=True) if ok]
    if not taken:
        return accepted
    txn_ids = session.scalars(
        insert(LedgerTransaction).returning(LedgerTransaction.id, sort_by_parameter_order=True),
        [{"kind": kind, "ref": ref, "memo": "", "created_at": now} for ref, _ in taken],
    ).all()
    session.execute(
        insert(LedgerEntry),
        [
            {"txn_id": txn_id, "account_id": a, "amount_fen": m}
            for txn_id, (_, net) in zip(txn_ids, taken, strict=True)
            for a, m in sorted(net.items())
        ],
    )
    changed = {a for _, net in taken for a in net}
    session.execute(
        update(LedgerAccount),
        [{"id": a, "balance_fen": balance[a]} for a in sorted(changed)],
    )
    for obj in list(session.identity_map.values()):
        if isinstance(obj, LedgerAccount) and obj.id in changed:
            session.expire(obj)
    return accepted


def hold_entries(buyer: str, planned: Payment) -> list[tuple[str, int]]:
    """Placed work: the buyer's share into escrow, the voucher's share out of its grant."""
    out = [(wallet(buyer), -planned.buyer_fen), (escrow(buyer), planned.buyer_fen)]
    if planned.voucher_id is not None and planned.voucher_fen:
        out += [
            (grant(planned.voucher_id, buyer), -planned.voucher_fen),
            (voucher_escrow(planned.voucher_id), planned.voucher_fen),
        ]
    return out


def settle_entries(
    buyer: str, seller: str, planned: Payment, captured: Payment
) -> list[tuple[str, int]]:
    """Ended work: pay ``captured`` out of the holds of ``planned``, release the rest."""
    out = [
        (escrow(buyer), -planned.buyer_fen),
        (wallet(buyer), planned.buyer_fen - captured.buyer_fen),
        (receivable(seller), captured.seller_fen),
        (FEE, captured.fee_fen),
    ]
    if planned.voucher_id is not None:
        out += [
            (voucher_escrow(planned.voucher_id), -planned.voucher_fen),
            (grant(planned.voucher_id, buyer), planned.voucher_fen - captured.voucher_fen),
        ]
    else:
        # capture_share never draws a voucher the plan did not have
        assert captured.voucher_fen == 0
    return out


def bounded_capture(planned: Payment, share: float) -> Payment:
    """``capture_share`` with each leg at most its hold.

    With a voucher, fen rounding can make the engine's buyer leg one fen larger than the
    buyer's hold (e.g. 5 held, 6 captured at share 0.965); the excess comes off the fee,
    then the seller, so the legs still balance and nothing is taken that was not held.
    """
    c = capture_share(planned, share)
    excess = c.buyer_fen - planned.buyer_fen
    if excess <= 0:
        return c
    fee_cut = min(excess, c.fee_fen)
    seller_cut = excess - fee_cut
    return Payment(
        buyer_fen=planned.buyer_fen,
        voucher_fen=c.voucher_fen,
        seller_fen=c.seller_fen - seller_cut,
        fee_fen=c.fee_fen - fee_cut,
        voucher_id=c.voucher_id,
    )
