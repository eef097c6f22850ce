"""Buyers: jobs and services — submit, list, read, cancel or stop, and why."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from sqlalchemy import Select, insert, select
from sqlalchemy.orm import Session

from suanli.catalog import Catalog, accelerator, city, model
from suanli.engine.lifecycle import WorkState
from suanli.errors import UnknownName
from suanli.service.auth import Principal
from suanli.service.deps import Buyer, BuyerOnly, IdempotencyKey, Limit, Offset, PathId, Rt
from suanli.service.events import record_event
from suanli.service.idempotency import run_idempotent
from suanli.service.problems import PROBLEM_RESPONSES, FieldError, NotFound, Unprocessable
from suanli.service.schemas.common import ID_PATTERN
from suanli.service.schemas.work import (
    EventOut,
    JobOut,
    JobSpec,
    PlacementOut,
    ServiceOut,
    ServiceSpec,
    ServiceUpdate,
    WhyOut,
)
from suanli.service.service_demand import measured_rps
from suanli.service.tables import (
    AllocationRow,
    Event,
    JobRow,
    PoolRow,
    ServiceRow,
    new_id,
)
from suanli.service.work_ops import cancel_job, lock_job, stop_service, update_service

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["work"], responses=PROBLEM_RESPONSES)

StateFilter = Annotated[str | None, Query(pattern=r"^[a-z]{1,16}$")]
TenantFilter = Annotated[str | None, Query(pattern=ID_PATTERN)]


def _resolve(fn: object, cat: Catalog, name: str, field: str) -> str:
    try:
        return fn(cat, name).name  # type: ignore[operator, no-any-return]
    except UnknownName as exc:
        raise Unprocessable(str(exc), errors=[FieldError(field=field, reason=str(exc))]) from None


def _gpus(cat: Catalog, names: list[str] | None, field: str) -> list[str] | None:
    if names is None:
        return None
    return [_resolve(accelerator, cat, n, f"{field}[{i}]") for i, n in enumerate(names)]


# ----- jobs -------------------------------------------------------------------------------
@router.post("/jobs", status_code=201, response_model=JobOut)
def post_job(
    spec: JobSpec, request: Request, rt: Rt, who: BuyerOnly, key: IdempotencyKey = None
) -> Response:
    """Submit a batch job; it waits (``pending``) for the next clearing round."""
    cat = rt.catalog
    origin = _resolve(city, cat, spec.data.origin_city, "body.data.origin_city")
    allowed = _gpus(cat, spec.resources.allowed_gpus, "body.resources.allowed_gpus")

    def run(session: Session) -> tuple[int, JobOut]:
        # Core inserts, not the ORM's unit of work: this is the hottest write path.
        now = rt.clock.now()
        values: dict[str, Any] = {
            "id": new_id("job"),
            "tenant_id": who.tenant_id,
            "account_id": who.account_id,
            "name": spec.name,
            "image": spec.image,
            "command": spec.command,
            "gpus": spec.resources.gpus,
            "min_mem_gb": spec.resources.min_mem_gb,
            "allowed_gpus": allowed,
            "work_ref_gpu_hours": spec.work_ref_gpu_hours,
            "done_ref_gpu_hours": 0.0,
            "bid_cny_per_ref_gpu_hour": spec.bid_cny_per_ref_gpu_hour,
            "deadline_at": now + timedelta(hours=spec.deadline_h) if spec.deadline_h else None,
            "data_gb": spec.data.size_gb,
            "origin_city": origin,
            "interruptible": spec.interruptible,
            "checkpoint_every_h": spec.checkpoint.every_h if spec.checkpoint else None,
            "state": WorkState.PENDING.value,
            "reason": "submitted",
            "last_reasons": [],
            "pool_id": None,
            "allocation_id": None,
            "exit_code": None,
            "submitted_at": now,
            "placed_at": None,
            "started_at": None,
            "finished_at": None,
            "run_spec": spec.run_spec(),
        }
        session.execute(insert(JobRow).values(values))
        session.execute(
            insert(Event).values(
                at=now,
                tenant_id=who.tenant_id,
                actor=who.account_id,
                subject_kind="job",
                subject_id=values["id"],
                kind="transition",
                from_state=WorkState.PENDING.value,
                to_state=WorkState.PENDING.value,
                reason="submitted",
            )
        )
        return 201, JobOut.model_validate(values)

    return run_idempotent(rt.db, who, key, "POST", request.url.path, spec, rt.clock.now, run)


@router.get("/jobs", response_model=list[JobOut])
def list_jobs(
    rt: Rt,
    who: Buyer,
    state: StateFilter = None,
    tenant_id: TenantFilter = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[JobOut]:
    """The caller's jobs, newest first (operators: everyone's, or ``tenant_id``'s)."""
    with rt.db.read() as s:
        q = _listing(JobRow, who, state, tenant_id, limit, offset)
        return [JobOut.model_validate(r) for r in s.scalars(q)]


def _listing(
    row: type[JobRow] | type[ServiceRow],
    who: Principal,
    state: str | None,
    tenant_id: str | None,
    limit: int,
    offset: int,
) -> Select[Any]:
    """Newest first; a buyer sees its own tenant's rows, an operator everyone's (or one
    tenant's)."""
    q = select(row).order_by(row.submitted_at.desc(), row.id).limit(limit).offset(offset)
    if not who.is_operator:
        q = q.where(row.tenant_id == who.tenant_id)
    elif tenant_id:
        q = q.where(row.tenant_id == tenant_id)
    if state:
        q = q.where(row.state == state)
    return q


def _job(session: Session, job_id: str, who: Principal) -> JobRow:
    row = session.get(JobRow, job_id)
    if row is None or (not who.is_operator and row.tenant_id != who.tenant_id):
        raise NotFound(f"no job {job_id!r}")
    return row


@router.get("/jobs/{job_id}", response_model=JobOut)
def get_job(job_id: PathId, rt: Rt, who: Buyer) -> JobOut:
    with rt.db.read() as s:
        return JobOut.model_validate(_job(s, job_id, who))


@router.post("/jobs/{job_id}/cancel", response_model=JobOut)
def post_cancel(
    job_id: PathId, request: Request, rt: Rt, who: Buyer, key: IdempotencyKey = None
) -> Response:
    """Cancel a job: GPU time already delivered is billed, the rest of the hold released."""

    def run(session: Session) -> tuple[int, JobOut]:
        row = lock_job(session, job_id, who)
        cancel_job(session, row, rt.clock.now(), who.account_id)
        session.flush()
        return 200, JobOut.model_validate(row)

    return run_idempotent(rt.db, who, key, "POST", request.url.path, {}, rt.clock.now, run)


def _events(session: Session, kind: str, item_id: str) -> list[EventOut]:
    rows = session.scalars(
        select(Event)
        .where(Event.subject_kind == kind, Event.subject_id == item_id)
        .order_by(Event.id)
        .limit(1000)
    )
    return [EventOut.model_validate(e) for e in rows]


@router.get("/jobs/{job_id}/events", response_model=list[EventOut])
def get_job_events(job_id: PathId, rt: Rt, who: Buyer) -> list[EventOut]:
    """Every state change of the job, with its reason."""
    with rt.db.read() as s:
        _job(s, job_id, who)
        return _events(s, "job", job_id)


def _placements(session: Session, item_id: str) -> list[PlacementOut]:
    out = []
    for a in session.scalars(
        select(AllocationRow)
        .where(AllocationRow.item_id == item_id)
        .order_by(AllocationRow.placed_at)
    ):
        pool = session.get(PoolRow, a.pool_id)
        out.append(
            PlacementOut(
                allocation_id=a.id,
                pool_id=a.pool_id,
                site_id=pool.site_id if pool else None,
                gpu=pool.gpu if pool else None,
                gpus=a.gpus,
                price_cny_per_gpu_hour=a.price_cny_per_gpu_hour,
                planned_h=a.planned_h,
                held_buyer_fen=a.buyer_fen,
                held_voucher_fen=a.voucher_fen,
                voucher_program_id=a.voucher_program_id,
                why=a.why,
                active=a.active,
                endpoint=a.endpoint,
                health=a.health,
            )
        )
    return out


def _job_summary(row: JobRow, placements: list[PlacementOut]) -> str:
    state = WorkState(row.state)
    current = next((p for p in placements if p.active), None)
    if state is WorkState.PENDING:
        if row.last_reasons:
            return "pending: not placed in the last round — " + "; ".join(row.last_reasons)
        return "pending: waiting for the next clearing round"
    if state is WorkState.PLACED and current is not None:
        return f"placed on {current.pool_id}: {current.why}; waiting for the site to start it"
    if state is WorkState.RUNNING and current is not None:
        return f"running on {current.pool_id}: {current.why}"
    return f"{state.value}: {row.reason}"


@router.get("/jobs/{job_id}/why", response_model=WhyOut)
def get_job_why(job_id: PathId, rt: Rt, who: Buyer) -> WhyOut:
    """Why a job is pending (the engine's reasons) or where and why it was placed."""
    with rt.db.read() as s:
        row = _job(s, job_id, who)
        placements = _placements(s, job_id)
        return WhyOut(
            id=row.id,
            kind="job",
            state=row.state,
            summary=_job_summary(row, placements),
            reasons=list(row.last_reasons or []),
            placements=placements,
            events=_events(s, "job", job_id),
        )


# ----- services ---------------------------------------------------------------------------
def _demand(cat: Catalog, declared: dict[str, float]) -> dict[str, float]:
    """City names as the catalogue spells them (two spellings of one city add up)."""
    demand: dict[str, float] = {}
    for c, rps in declared.items():
        name = _resolve(city, cat, c, f"body.demand_rps.{c[:40]}")
        demand[name] = demand.get(name, 0.0) + rps
    return demand


@router.post("/services", status_code=201, response_model=ServiceOut)
def post_service(
    spec: ServiceSpec, request: Request, rt: Rt, who: BuyerOnly, key: IdempotencyKey = None
) -> Response:
    """Submit an inference service; replicas are placed and billed per horizon."""
    cat = rt.catalog
    model_name = _resolve(model, cat, spec.model, "body.model")
    demand = _demand(cat, spec.demand_rps)
    allowed = _gpus(cat, spec.resources.allowed_gpus, "body.resources.allowed_gpus")

    def run(session: Session) -> tuple[int, ServiceOut]:
        now = rt.clock.now()
        row = ServiceRow(
            id=new_id("svc"),
            tenant_id=who.tenant_id,
            account_id=who.account_id,
            name=spec.name,
            model=model_name,
            demand_rps=demand,
            prompt_tokens=spec.tokens.prompt,
            output_tokens=spec.tokens.output,
            ttft_ms=spec.slo.ttft_ms,
            tpot_ms=spec.slo.tpot_ms,
            bid_cny_per_m_output_tokens=spec.bid_cny_per_m_output_tokens,
            bid_cny_per_m_input_tokens=spec.bid_cny_per_m_input_tokens,
            bid_cny_per_m_cached_input_tokens=spec.bid_cny_per_m_cached_input_tokens,
            cached_fraction=spec.tokens.cached_fraction,
            min_replicas=spec.replicas.min,
            max_replicas=spec.replicas.max,
            allowed_gpus=allowed,
            state="active",
            reason="submitted",
            served_rps=0.0,
            last_reasons=[],
            submitted_at=now,
            command=spec.command,
            run_spec=spec.run_spec(),
        )
        session.add(row)
        record_event(
            session,
            at=now,
            subject_kind="service",
            subject_id=row.id,
            kind="submitted",
            tenant_id=who.tenant_id,
            actor=who.account_id,
            to_state="active",
            reason="submitted",
        )
        session.flush()
        return 201, ServiceOut.model_validate(row)

    return run_idempotent(rt.db, who, key, "POST", request.url.path, spec, rt.clock.now, run)


def _service(session: Session, service_id: str, who: Principal, lock: bool = False) -> ServiceRow:
    row = session.get(ServiceRow, service_id, with_for_update=lock)
    if row is None or (not who.is_operator and row.tenant_id != who.tenant_id):
        raise NotFound(f"no service {service_id!r}")
    return row


def _service_out(session: Session, row: ServiceRow) -> ServiceOut:
    out = ServiceOut.model_validate(row)
    out.replicas = [p for p in _placements(session, row.id) if p.active]
    out.measured_rps = measured_rps(row)
    return out


@router.get("/services", response_model=list[ServiceOut])
def list_services(
    rt: Rt,
    who: Buyer,
    state: StateFilter = None,
    tenant_id: TenantFilter = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[ServiceOut]:
    with rt.db.read() as s:
        q = _listing(ServiceRow, who, state, tenant_id, limit, offset)
        return [_service_out(s, r) for r in s.scalars(q)]


@router.get("/services/{service_id}", response_model=ServiceOut)
def get_service(service_id: PathId, rt: Rt, who: Buyer) -> ServiceOut:
    with rt.db.read() as s:
        return _service_out(s, _service(s, service_id, who))


@router.post("/services/{service_id}/stop", response_model=ServiceOut)
def post_stop(
    service_id: PathId, request: Request, rt: Rt, who: Buyer, key: IdempotencyKey = None
) -> Response:
    """Stop a service: its replicas are billed for the time they ran, then freed."""

    def run(session: Session) -> tuple[int, ServiceOut]:
        row = _service(session, service_id, who, lock=True)
        stop_service(session, row, rt.clock.now(), who.account_id)
        session.flush()
        return 200, _service_out(session, row)

    out = run_idempotent(rt.db, who, key, "POST", request.url.path, {}, rt.clock.now, run)
    rt.serving_changes.bump()  # gateways stop routing to its replicas now
    return out


@router.patch("/services/{service_id}", response_model=ServiceOut)
def patch_service(service_id: PathId, body: ServiceUpdate, rt: Rt, who: BuyerOnly) -> ServiceOut:
    """Change a running service's demand, bids, SLO, token profile or replica bounds.
    The next round uses them: more demand adds replicas beside the live ones at once,
    less demand lets replicas go as their billing horizons end (after the estimator's
    hysteresis); gateways see a new SLO at once. A stopped service cannot be changed
    (409)."""
    demand = _demand(rt.catalog, body.demand_rps) if body.demand_rps is not None else None

    def run(session: Session) -> ServiceOut:
        row = _service(session, service_id, who, lock=True)
        update_service(session, row, body, demand, rt.clock.now(), who.account_id)
        session.flush()
        return _service_out(session, row)

    out = rt.db.transact(run)
    rt.serving_changes.bump()
    return out


@router.get("/services/{service_id}/why", response_model=WhyOut)
def get_service_why(service_id: PathId, rt: Rt, who: Buyer) -> WhyOut:
    with rt.db.read() as s:
        row = _service(s, service_id, who)
        placements = _placements(s, service_id)
        active = [p for p in placements if p.active]
        if row.state != "active":
            summary = f"{row.state}: {row.reason}"
        elif active:
            summary = f"serving {row.served_rps:.1f} req/s: {active[0].why}"
        elif row.last_reasons:
            summary = "waiting: not placed in the last round — " + "; ".join(row.last_reasons)
        else:
            summary = "waiting for the next clearing round"
        return WhyOut(
            id=row.id,
            kind="service",
            state=row.state,
            summary=summary,
            reasons=list(row.last_reasons or []),
            placements=placements,
            events=_events(s, "service", service_id),
        )
