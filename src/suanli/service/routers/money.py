"""Vouchers, allocations, usage, invoices and the ledger."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from suanli.service.audit import audit
from suanli.service.auth import Principal, Role
from suanli.service.deps import (
    Buyer,
    BuyerOnly,
    CurrentPrincipal,
    IdempotencyKey,
    Limit,
    Offset,
    Operator,
    PathId,
    Rt,
)
from suanli.service.idempotency import run_idempotent
from suanli.service.ledger import grant, voucher_fund
from suanli.service.problems import PROBLEM_RESPONSES, Conflict, NotFound
from suanli.service.schemas.money import (
    AllocationOut,
    GrantCreate,
    GrantOut,
    InvoiceCreate,
    InvoiceOut,
    InvoiceTokens,
    LedgerAccountOut,
    UsageOut,
    VoucherCreate,
    VoucherOut,
)
from suanli.service.tables import (
    AllocationRow,
    Invoice,
    LedgerAccount,
    UsageRow,
    VoucherGrant,
    VoucherProgramRow,
    new_id,
)
from suanli.service.token_usage import invoice_tokens
from suanli.service.vouchers import create_program, grant_voucher, redeem_voucher

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["money"], responses=PROBLEM_RESPONSES)


# ----- vouchers ---------------------------------------------------------------------------
def _voucher_out(session: Session, row: VoucherProgramRow) -> VoucherOut:
    out = VoucherOut.model_validate(row)
    fund = session.get(LedgerAccount, voucher_fund(row.id))
    out.unallocated_fen = fund.balance_fen if fund else 0
    out.granted_fen = int(
        session.scalar(
            select(func.coalesce(func.sum(VoucherGrant.amount_fen), 0)).where(
                VoucherGrant.program_id == row.id
            )
        )
        or 0
    )
    return out


@router.post("/vouchers", status_code=201, response_model=VoucherOut)
def post_voucher(
    body: VoucherCreate, request: Request, rt: Rt, who: Operator, key: IdempotencyKey = None
) -> Response:
    """Create a voucher program and fund its budget."""

    def run(session: Session) -> tuple[int, VoucherOut]:
        row = create_program(session, body, who.tenant_id, rt.clock.now())
        return 201, _voucher_out(session, row)

    return run_idempotent(rt.db, who, key, "POST", request.url.path, body, rt.clock.now, run)


@router.get("/vouchers", response_model=list[VoucherOut])
def list_vouchers(rt: Rt, who: Buyer, limit: Limit = 100, offset: Offset = 0) -> list[VoucherOut]:
    """Operators: every program. Buyers: programs they hold a grant of, or may redeem."""
    with rt.db.read() as s:
        q = (
            select(VoucherProgramRow)
            .order_by(VoucherProgramRow.created_at)
            .limit(limit)
            .offset(offset)
        )
        if not who.is_operator:
            mine = select(VoucherGrant.program_id).where(VoucherGrant.tenant_id == who.tenant_id)
            q = q.where(
                or_(VoucherProgramRow.id.in_(mine), VoucherProgramRow.claim_fen.is_not(None))
            )
        return [_voucher_out(s, r) for r in s.scalars(q)]


def _program(session: Session, program_id: str, who: Principal) -> VoucherProgramRow:
    row = session.get(VoucherProgramRow, program_id)
    visible = row is not None and (
        who.is_operator
        or row.claim_fen is not None
        or session.scalars(
            select(VoucherGrant.id).where(
                VoucherGrant.program_id == program_id, VoucherGrant.tenant_id == who.tenant_id
            )
        ).first()
        is not None
    )
    if row is None or not visible:
        raise NotFound(f"no voucher program {program_id!r}")
    return row


@router.get("/vouchers/{program_id}", response_model=VoucherOut)
def get_voucher(program_id: PathId, rt: Rt, who: Buyer) -> VoucherOut:
    with rt.db.read() as s:
        return _voucher_out(s, _program(s, program_id, who))


def _grant_out(session: Session, row: VoucherGrant) -> GrantOut:
    out = GrantOut.model_validate(row)
    acc = session.get(LedgerAccount, grant(row.program_id, row.tenant_id))
    out.balance_fen = acc.balance_fen if acc else 0
    return out


@router.post("/vouchers/{program_id}/grants", status_code=201, response_model=GrantOut)
def post_grant(
    program_id: PathId,
    body: GrantCreate,
    request: Request,
    rt: Rt,
    who: Operator,
    key: IdempotencyKey = None,
) -> Response:
    """Grant part of a program's budget to a buyer (or top a grant up)."""

    def run(session: Session) -> tuple[int, GrantOut]:
        row = grant_voucher(session, program_id, body.tenant_id, body.amount_fen, rt.clock.now())
        return 201, _grant_out(session, row)

    return run_idempotent(rt.db, who, key, "POST", request.url.path, body, rt.clock.now, run)


@router.get("/vouchers/{program_id}/grants", response_model=list[GrantOut])
def list_grants(
    program_id: PathId, rt: Rt, who: Buyer, limit: Limit = 100, offset: Offset = 0
) -> list[GrantOut]:
    with rt.db.read() as s:
        _program(s, program_id, who)
        q = (
            select(VoucherGrant)
            .where(VoucherGrant.program_id == program_id)
            .order_by(VoucherGrant.created_at)
            .limit(limit)
            .offset(offset)
        )
        if not who.is_operator:
            q = q.where(VoucherGrant.tenant_id == who.tenant_id)
        return [_grant_out(s, g) for g in s.scalars(q)]


@router.post("/vouchers/{program_id}/redeem", status_code=201, response_model=GrantOut)
def post_redeem(
    program_id: PathId, request: Request, rt: Rt, who: BuyerOnly, key: IdempotencyKey = None
) -> Response:
    """Claim a program's self-service grant (once per buyer, while the budget lasts)."""

    def run(session: Session) -> tuple[int, GrantOut]:
        row = redeem_voucher(session, program_id, who.tenant_id, rt.clock.now())
        return 201, _grant_out(session, row)

    return run_idempotent(rt.db, who, key, "POST", request.url.path, {}, rt.clock.now, run)


# ----- allocations, usage -----------------------------------------------------------------
ActiveFilter = Annotated[bool | None, Query()]


def _scope(q, who: Principal, buyer_col, seller_col):  # type: ignore[no-untyped-def]
    if who.role is Role.BUYER:
        return q.where(buyer_col == who.tenant_id)
    if who.role is Role.SELLER:
        return q.where(seller_col == who.tenant_id)
    return q


@router.get("/allocations", response_model=list[AllocationOut])
def list_allocations(
    rt: Rt,
    who: CurrentPrincipal,
    active: ActiveFilter = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[AllocationOut]:
    """GPUs held: a buyer's work, the work on a seller's pools, or (operators) all."""
    with rt.db.read() as s:
        q = select(AllocationRow).order_by(AllocationRow.placed_at.desc(), AllocationRow.id)
        q = _scope(q, who, AllocationRow.buyer_tenant_id, AllocationRow.seller_tenant_id)
        if active is not None:
            q = q.where(AllocationRow.active.is_(active))
        return [AllocationOut.model_validate(a) for a in s.scalars(q.limit(limit).offset(offset))]


@router.get("/usage", response_model=list[UsageOut])
def list_usage(
    rt: Rt, who: CurrentPrincipal, limit: Limit = 100, offset: Offset = 0
) -> list[UsageOut]:
    """Delivered GPU time and what it cost (buyers) or earned (sellers)."""
    with rt.db.read() as s:
        q = select(UsageRow).order_by(UsageRow.created_at.desc(), UsageRow.id)
        q = _scope(q, who, UsageRow.buyer_tenant_id, UsageRow.seller_tenant_id)
        return [UsageOut.model_validate(u) for u in s.scalars(q.limit(limit).offset(offset))]


# ----- invoices ---------------------------------------------------------------------------
def _invoice_out(inv: Invoice) -> InvoiceOut:
    """The invoice with the token quantities kept in its ``details``."""
    out = InvoiceOut.model_validate(inv)
    details = inv.details or {}
    out.tokens = [InvoiceTokens.model_validate(t) for t in details.get("tokens", [])]
    for field in ("tokens_from", "tokens_until"):
        at = details.get(field)
        setattr(out, field, datetime.fromisoformat(at) if at else None)
    return out


def _token_details(session: Session, tenant_id: str, until: datetime) -> dict[str, Any]:
    """Tokens of the batches received since the tenant's last invoice took its tokens,
    up to ``until``: each batch lands on exactly one invoice."""
    # The latest invoices (several may share an instant): the furthest point any took.
    latest = (
        select(func.max(Invoice.created_at)).where(Invoice.tenant_id == tenant_id)
    ).scalar_subquery()
    taken = [
        datetime.fromisoformat(str(d["tokens_until"]))
        for d in session.scalars(
            select(Invoice.details).where(
                Invoice.tenant_id == tenant_id, Invoice.created_at == latest
            )
        )
        if d and d.get("tokens_until")
    ]
    after = max(taken, default=None)
    until = max(until, after) if after is not None else until
    return {
        "tokens_from": after.isoformat() if after else None,
        "tokens_until": until.isoformat(),
        "tokens": invoice_tokens(session, tenant_id, after, until),
    }


@router.post("/invoices", status_code=201, response_model=InvoiceOut)
def post_invoice(
    body: InvoiceCreate, request: Request, rt: Rt, who: BuyerOnly, key: IdempotencyKey = None
) -> Response:
    """Close an invoice over the usage not yet invoiced; each record is invoiced once.
    Beside the GPU-hours, it lists per service the tokens served since the last invoice
    (quantities, for re-billing)."""

    def run(session: Session) -> tuple[int, InvoiceOut]:
        now = rt.clock.now()
        q = (
            select(UsageRow)
            .where(UsageRow.buyer_tenant_id == who.tenant_id, UsageRow.invoice_id.is_(None))
            .order_by(UsageRow.id)
            .with_for_update()
        )
        if body.until is not None:
            q = q.where(UsageRow.to_at <= body.until)
        lines = list(session.scalars(q))
        if not lines:
            raise Conflict("no usage left to invoice")
        inv = Invoice(
            id=new_id("inv"),
            tenant_id=who.tenant_id,
            lines=len(lines),
            gpu_hours=sum(u.gpu_hours for u in lines),
            buyer_fen=sum(u.buyer_fen for u in lines),
            voucher_fen=sum(u.voucher_fen for u in lines),
            total_fen=sum(u.buyer_fen + u.voucher_fen for u in lines),
            period_from=min(u.from_at for u in lines),
            period_to=max(u.to_at for u in lines),
            created_at=now,
            # Read after the usage rows are locked: a concurrent twin's invoice is seen.
            # A future ``until`` would skip tokens received before it on the next invoice.
            details=_token_details(session, who.tenant_id, min(body.until or now, now)),
        )
        session.add(inv)
        for u in lines:
            u.invoice_id = inv.id
        session.flush()
        return 201, _invoice_out(inv)

    return run_idempotent(rt.db, who, key, "POST", request.url.path, body, rt.clock.now, run)


@router.get("/invoices", response_model=list[InvoiceOut])
def list_invoices(rt: Rt, who: Buyer, limit: Limit = 100, offset: Offset = 0) -> list[InvoiceOut]:
    with rt.db.read() as s:
        q = select(Invoice).order_by(Invoice.created_at.desc(), Invoice.id)
        if not who.is_operator:
            q = q.where(Invoice.tenant_id == who.tenant_id)
        return [_invoice_out(i) for i in s.scalars(q.limit(limit).offset(offset))]


@router.get("/invoices/{invoice_id}", response_model=InvoiceOut)
def get_invoice(invoice_id: PathId, rt: Rt, who: Buyer) -> InvoiceOut:
    with rt.db.read() as s:
        inv = s.get(Invoice, invoice_id)
        if inv is None or (not who.is_operator and inv.tenant_id != who.tenant_id):
            raise NotFound(f"no invoice {invoice_id!r}")
        return _invoice_out(inv)


# ----- ledger -----------------------------------------------------------------------------
@router.get("/ledger/accounts", response_model=list[LedgerAccountOut])
def list_ledger_accounts(
    rt: Rt, _: Operator, limit: Limit = 1000, offset: Offset = 0
) -> list[LedgerAccountOut]:
    with rt.db.read() as s:
        q = select(LedgerAccount).order_by(LedgerAccount.id).limit(limit).offset(offset)
        return [LedgerAccountOut.model_validate(a) for a in s.scalars(q)]


@router.get("/ledger/audit", response_model=list[str])
def get_audit(rt: Rt, _: Operator) -> list[str]:
    """Every violated ledger invariant (an empty list when the books are sound)."""
    with rt.db.read() as s:
        return audit(s)
