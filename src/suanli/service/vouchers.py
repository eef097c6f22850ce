"""Voucher programs and grants: budgets move world → program → grants → draws."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from suanli.service.ledger import WORLD, grant, open_accounts, post, voucher_escrow, voucher_fund
from suanli.service.problems import Conflict, InsufficientFunds, NotFound, Unprocessable
from suanli.service.schemas.money import VoucherCreate
from suanli.service.tables import Tenant, VoucherGrant, VoucherProgramRow, new_id

__all__ = ["create_program", "grant_voucher", "redeem_voucher"]


def create_program(
    session: Session, body: VoucherCreate, tenant_id: str, now: datetime
) -> VoucherProgramRow:
    row = VoucherProgramRow(
        id=new_id("vp"),
        tenant_id=tenant_id,
        name=body.name,
        coverage=body.coverage,
        budget_fen=body.budget_fen,
        per_buyer_cap_fen=body.per_buyer_cap_fen,
        claim_fen=body.claim_fen,
        eligible_sites=body.eligible_sites,
        eligible_hubs=body.eligible_hubs,
        eligible_provinces=body.eligible_provinces,
        domestic_gpus_only=body.domestic_gpus_only,
        valid_from=body.valid_from,
        valid_until=body.valid_until,
        created_at=now,
    )
    session.add(row)
    session.flush()
    open_accounts(session, [voucher_fund(row.id), voucher_escrow(row.id)], now, owner_id=row.id)
    post(
        session,
        "budget",
        [(WORLD, -body.budget_fen), (voucher_fund(row.id), body.budget_fen)],
        now,
        ref=row.id,
        memo=f"budget of {body.name}"[:300],
    )
    return row


def redeem_voucher(
    session: Session, program_id: str, tenant_id: str, now: datetime
) -> VoucherGrant:
    """A buyer's self-service claim of a program: once per buyer, while the budget lasts.

    Once by construction: the program's row is locked before the buyer's grants are
    looked up, so racing redeems (and grants) of one program run one after another and
    each sees what the one before committed; a redeem never tops a grant up, and the
    unique (program, tenant) pair refuses a second grant row outright.
    """
    prog = _locked_program(session, program_id)
    if prog.claim_fen is None:
        raise NotFound(f"no voucher program {program_id!r} open for redemption")
    return grant_voucher(session, program_id, tenant_id, prog.claim_fen, now, top_up=False)


def _locked_program(session: Session, program_id: str) -> VoucherProgramRow:
    prog = session.get(VoucherProgramRow, program_id, with_for_update=True)
    if prog is None:
        raise NotFound(f"no voucher program {program_id!r}")
    return prog


def grant_voucher(
    session: Session,
    program_id: str,
    tenant_id: str,
    amount_fen: int,
    now: datetime,
    *,
    top_up: bool = True,
) -> VoucherGrant:
    """Grant (or, with ``top_up``, top up) ``amount_fen`` of a program to a buyer; never
    past the budget or the per-buyer cap. Grants of one program are serialized on its
    row; without ``top_up`` a buyer who holds a grant already gets a Conflict."""
    prog = _locked_program(session, program_id)
    if session.get(Tenant, tenant_id) is None:
        raise NotFound(f"no tenant {tenant_id!r}")
    row = session.scalars(
        select(VoucherGrant)
        .where(VoucherGrant.program_id == program_id, VoucherGrant.tenant_id == tenant_id)
        .with_for_update()
    ).first()
    if row is not None and not top_up:
        raise Conflict(f"your tenant already holds a grant of {program_id}")
    total = amount_fen + (row.amount_fen if row else 0)
    if prog.per_buyer_cap_fen is not None and total > prog.per_buyer_cap_fen:
        raise Unprocessable(
            f"{program_id}: a grant of {total / 100:.2f} yuan would pass the per-buyer cap "
            f"of {prog.per_buyer_cap_fen / 100:.2f} yuan"
        )
    if row is None:
        row = VoucherGrant(
            id=new_id("grant"),
            program_id=program_id,
            tenant_id=tenant_id,
            amount_fen=amount_fen,
            created_at=now,
        )
        session.add(row)
        session.flush()
        open_accounts(session, [grant(program_id, tenant_id)], now, owner_id=tenant_id)
    else:
        row.amount_fen = total
    try:
        post(
            session,
            "grant",
            [(voucher_fund(program_id), -amount_fen), (grant(program_id, tenant_id), amount_fen)],
            now,
            ref=row.id,
        )
    except InsufficientFunds:
        raise Conflict(
            f"voucher program {program_id} has less than {amount_fen / 100:.2f} yuan of "
            "budget left to grant"
        ) from None
    return row
