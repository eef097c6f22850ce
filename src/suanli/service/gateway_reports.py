"""Recording what inference gateways measured: metered token usage and demand, each
batch exactly once.

A gateway journals its batches and sends each until it gets an answer, so the same
batch may arrive twice (a lost answer, a restart) or twice at once. Its ``batch_id`` is
the primary key of ``gateway_batches``, inserted in the same transaction as the usage
and traffic rows: a twin that finds it, or loses the race on the key (an
``IntegrityError``, on SQLite and PostgreSQL alike), adds nothing and is answered
``duplicate: true``.

Each demand line is also folded into its service's measured demand (``demand_estimates``
on the service's row, under its lock) with the shared estimator; the next clearing round
plans from it (``service_demand``). Several gateways measure the same service and city
(the edge in Shanghai, the exchange's own): their folds must add up, not average, so a
fold covers at most the time since the estimate was last updated — the estimator then
adds ``requests × ln 2 / half-life`` per fold, as an exponentially decayed count does.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from suanli.catalog import Catalog, city
from suanli.errors import UnknownName
from suanli.gateway.protocol import DemandLine, GatewayReport, ReportAck, UsageLine
from suanli.market.demand_estimate import CityEstimate, EstimatorParams, Observation, observe
from suanli.service.problems import FieldError, Unprocessable
from suanli.service.runtime import Runtime
from suanli.service.service_demand import PARAMS, dump_estimates, load_estimates, seconds
from suanli.service.tables import GatewayBatch, ServiceRow, ServiceTraffic, TokenUsage

__all__ = ["record_report", "submit_report"]

# Column limits (PostgreSQL refuses longer strings and larger integers outright).
_MAX_INT = 2**31 - 1
_MAX_BIG = 2**63 - 1
_MAX_KEY_ID, _MAX_CITY = 40, 60
# The shortest span one fold may cover: reports at the same instant still add up.
_MIN_FOLD_S = 0.01
_SHOWN_ERRORS = 20


def submit_report(rt: Runtime, report: GatewayReport) -> ReportAck:
    """Record ``report`` in one transaction (once per ``batch_id``); gateways' state
    polls are woken when it added usage (keys' tokens of the day changed)."""
    try:
        ack = rt.db.transact(
            lambda s: record_report(s, report, rt.clock.now(), rt.catalog, rt.settings.estimator)
        )
    except IntegrityError:
        # A concurrent twin inserted the batch first and committed: this one added nothing.
        with rt.db.read() as s:
            if s.get(GatewayBatch, report.batch_id) is None:
                raise
        return ReportAck(batch_id=report.batch_id, duplicate=True)
    if not ack.duplicate and report.usage:
        rt.serving_changes.bump()
    return ack


def record_report(
    session: Session,
    report: GatewayReport,
    now: datetime,
    cat: Catalog,
    params: EstimatorParams = PARAMS,
) -> ReportAck:
    """Record one batch inside the caller's transaction; 422 (nothing recorded) when a
    line names a service that does not exist or a value does not fit."""
    if session.get(GatewayBatch, report.batch_id) is not None:
        return ReportAck(batch_id=report.batch_id, duplicate=True)
    start, end = _window(report)
    _refuse(list(_bad_values(report)), "the report has values the exchange cannot store")
    services = _lock_services(session, report)
    session.add(
        GatewayBatch(
            batch_id=report.batch_id,
            gateway=report.gateway,
            window_start=start,
            window_end=end,
            received_at=now,
        )
    )
    session.flush()  # a twin that committed first makes this fail: see submit_report
    usage = [_usage_row(u, report.batch_id, end, services) for u in report.usage if _any(u)]
    if usage:
        session.execute(insert(TokenUsage), usage)
    if report.demand:
        session.execute(
            insert(ServiceTraffic),
            [_traffic_row(d, report.batch_id, start, end) for d in report.demand],
        )
    window_s = (end - start).total_seconds()
    _fold(services, report.demand, (window_s, seconds(now)), cat, params)
    return ReportAck(batch_id=report.batch_id, duplicate=False)


def _window(report: GatewayReport) -> tuple[datetime, datetime]:
    start, end = _utc(report.window_start), _utc(report.window_end)
    errors = [
        FieldError(field=f"body.{name}", reason="must be between the years 2000 and 2200")
        for name, at in (("window_start", start), ("window_end", end))
        if not 2000 <= at.year <= 2200
    ]
    if not errors and end < start:
        errors.append(FieldError(field="body.window_end", reason="is before window_start"))
    if not errors and end == start and report.demand:
        errors.append(
            FieldError(field="body.window_end", reason="demand needs a window longer than 0 s")
        )
    _refuse(errors, "the report's window is not a time span")
    return start, end


def _utc(at: datetime) -> datetime:
    """Aware UTC; a naive time is read as UTC (what gateways send)."""
    if at.tzinfo is None:
        return at.replace(tzinfo=UTC)
    try:
        return at.astimezone(UTC)
    except OverflowError:
        return datetime.min.replace(tzinfo=UTC)  # refused by _window's year check


def _bad_values(report: GatewayReport) -> Iterator[FieldError]:
    texts: list[tuple[str, str, int]] = [
        ("batch_id", report.batch_id, 64),
        ("gateway", report.gateway, 100),
    ]
    for i, u in enumerate(report.usage):
        texts += [(f"usage[{i}].key_id", u.key_id, _MAX_KEY_ID), (f"usage[{i}].city", u.city, 60)]
        yield from _counts(f"usage[{i}]", u, ("requests", "errors"), _MAX_INT)
        tokens = ("input_tokens", "cached_input_tokens", "output_tokens")
        yield from _counts(f"usage[{i}]", u, tokens, _MAX_BIG)
    for i, d in enumerate(report.demand):
        texts.append((f"demand[{i}].city", d.city, _MAX_CITY))
        ints = ("requests", "slo_met", "slo_total", "rejected")
        yield from _counts(f"demand[{i}]", d, ints, _MAX_INT)
        tokens = ("prompt_tokens", "cached_tokens", "output_tokens")
        yield from _counts(f"demand[{i}]", d, tokens, _MAX_BIG)
    for name, text, most in texts:
        if len(text) > most:
            yield FieldError(field=f"body.{name}", reason=f"longer than {most} characters")
        elif any(ch < " " or ch == "\x7f" for ch in text):
            yield FieldError(field=f"body.{name}", reason="has control characters")


def _counts(where: str, line: Any, names: Sequence[str], most: int) -> Iterator[FieldError]:
    for name in names:
        if getattr(line, name) > most:
            yield FieldError(field=f"body.{where}.{name}", reason=f"above {most}")


def _refuse(errors: list[FieldError], what: str) -> None:
    if errors:
        shown = "; ".join(f"{e.field} {e.reason}" for e in errors[:3])
        raise Unprocessable(f"{what}: {shown}", errors=errors[:_SHOWN_ERRORS])


def _lock_services(session: Session, report: GatewayReport) -> dict[str, ServiceRow]:
    """The services the report names, row-locked in id order; 422 naming the unknown."""
    lines: list[tuple[str, str]] = [
        (f"body.usage[{i}].service_id", u.service_id) for i, u in enumerate(report.usage)
    ] + [(f"body.demand[{i}].service_id", d.service_id) for i, d in enumerate(report.demand)]
    wanted = sorted({sid for _, sid in lines if len(sid) <= 40})
    found = (
        {
            row.id: row
            for row in session.scalars(
                select(ServiceRow)
                .where(ServiceRow.id.in_(wanted))
                .order_by(ServiceRow.id)
                .with_for_update()
            )
        }
        if wanted
        else {}
    )
    unknown = [(field, sid) for field, sid in lines if sid not in found]
    if unknown:
        names = sorted({sid[:40] for _, sid in unknown})
        raise Unprocessable(
            f"no such service: {', '.join(names[:10])}"
            + (" …" if len(names) > 10 else "")
            + "; the batch was not recorded",
            errors=[FieldError(field=f, reason=f"no service {sid[:40]!r}") for f, sid in unknown][
                :_SHOWN_ERRORS
            ],
        )
    return found


def _any(u: UsageLine) -> bool:
    return bool(
        u.requests or u.errors or u.input_tokens or u.cached_input_tokens or u.output_tokens
    )


def _usage_row(
    u: UsageLine, batch_id: str, end: datetime, services: dict[str, ServiceRow]
) -> dict[str, Any]:
    # A revoked (or unknown) key's usage is still recorded: the requests were served.
    return {
        "batch_id": batch_id,
        "tenant_id": services[u.service_id].tenant_id,
        "service_id": u.service_id,
        "key_id": u.key_id,
        "city": u.city,
        "window_end": end,
        "requests": u.requests,
        "errors": u.errors,
        "input_tokens": u.input_tokens,
        "cached_input_tokens": u.cached_input_tokens,
        "output_tokens": u.output_tokens,
    }


def _traffic_row(d: DemandLine, batch_id: str, start: datetime, end: datetime) -> dict[str, Any]:
    return {
        "batch_id": batch_id,
        "service_id": d.service_id,
        "city": d.city,
        "window_start": start,
        "window_end": end,
        "requests": d.requests,
        "prompt_tokens": d.prompt_tokens,
        "cached_tokens": d.cached_tokens,
        "output_tokens": d.output_tokens,
        "slo_met": d.slo_met,
        "slo_total": d.slo_total,
        "rejected": d.rejected,
    }


@dataclass
class _Totals:
    requests: float = 0.0
    prompt: float = 0.0
    cached: float = 0.0
    output: float = 0.0


def _fold(
    services: dict[str, ServiceRow],
    demand: Sequence[DemandLine],
    window: tuple[float, float],
    cat: Catalog,
    params: EstimatorParams,
) -> None:
    """Fold the batch's demand into each service's estimates, one observation per
    service × catalogue city (lines for a city the catalogue does not know are kept as
    traffic but cannot be planned for). ``window`` is (its length, its end) in s."""
    window_s, now_s = window
    totals: dict[tuple[str, str], _Totals] = {}
    for d in demand:
        name = _city(cat, d.city)
        if name is None:
            continue
        t = totals.setdefault((d.service_id, name), _Totals())
        t.requests += d.requests
        t.prompt += d.prompt_tokens
        t.cached += d.cached_tokens
        t.output += d.output_tokens
    touched: dict[str, dict[str, CityEstimate]] = {}
    for (service_id, name), t in sorted(totals.items()):
        row = services[service_id]
        estimates = touched.get(service_id) or load_estimates(row.demand_estimates)
        prev = estimates.get(name)
        span = window_s if prev is None else min(window_s, now_s - prev.updated_s)
        obs = Observation(max(span, _MIN_FOLD_S), t.requests, t.prompt, t.cached, t.output)
        estimates[name] = observe(prev, obs, now_s, params)
        touched[service_id] = estimates
    for service_id, estimates in touched.items():
        services[service_id].demand_estimates = dump_estimates(estimates)


def _city(cat: Catalog, name: str) -> str | None:
    try:
        return city(cat, name).name
    except UnknownName:
        return None
