"""Metered tokens and measured traffic, summed for service owners: usage by service, key,
city or day (JSON, or CSV to re-bill their own users), traffic per demand city, and the
token quantities an invoice lists.

Gateways write one ``token_usage`` row per key × service × city per report batch, and a
batch is recorded once however often it is resent; so plain sums over the rows count each
token exactly once. The queries here never join the rows to anything that could repeat
them: names and bids are read apart, by id.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from suanli.service.schemas.serving import (
    GroupBy,
    ReplicaTraffic,
    TokenUsageOut,
    TrafficCity,
    TrafficOut,
)
from suanli.service.tables import (
    AllocationRow,
    GatewayBatch,
    InferenceKey,
    PoolRow,
    ServiceRow,
    ServiceTraffic,
    SiteRow,
    TokenUsage,
)

__all__ = [
    "CSV_COLUMNS",
    "UsageFilter",
    "invoice_tokens",
    "service_traffic",
    "sum_token_usage",
    "usage_csv",
]

_TOKEN_SUMS = ("requests", "errors", "input_tokens", "cached_input_tokens", "output_tokens")
_GROUP_FIELDS: dict[str, tuple[str, ...]] = {
    "service": ("service_id", "service_name"),
    "key": ("key_id", "key_name", "service_id", "service_name"),
    "city": ("city",),
    "day": ("day",),
}
CSV_COLUMNS: dict[str, tuple[str, ...]] = {
    g: (*fields, *_TOKEN_SUMS, "value_cny") for g, fields in _GROUP_FIELDS.items()
}


@dataclass(frozen=True, slots=True)
class UsageFilter:
    """Which rows to sum: one tenant's (None: every tenant's, for operators), optionally
    one service or key, with ``window_end`` in ``[since, until)``."""

    tenant_id: str | None
    service_id: str | None = None
    key_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def _day(session: Session) -> ColumnElement[str]:
    """The UTC date of a row's window end as ``YYYY-MM-DD`` (SQLite stores UTC naive)."""
    if session.get_bind().dialect.name == "postgresql":
        utc = func.timezone("UTC", TokenUsage.window_end)
        return func.to_char(utc, "YYYY-MM-DD")
    return func.date(TokenUsage.window_end)


def _where(q: Select[Any], f: UsageFilter) -> Select[Any]:
    if f.tenant_id is not None:
        q = q.where(TokenUsage.tenant_id == f.tenant_id)
    if f.service_id is not None:
        q = q.where(TokenUsage.service_id == f.service_id)
    if f.key_id is not None:
        q = q.where(TokenUsage.key_id == f.key_id)
    if f.since is not None:
        q = q.where(TokenUsage.window_end >= f.since)
    if f.until is not None:
        q = q.where(TokenUsage.window_end < f.until)
    return q


def _sums() -> list[ColumnElement[Any]]:
    return [func.coalesce(func.sum(getattr(TokenUsage, c)), 0) for c in _TOKEN_SUMS]


def _bids(session: Session, service_ids: set[str]) -> dict[str, ServiceRow]:
    if not service_ids:
        return {}
    rows = session.scalars(select(ServiceRow).where(ServiceRow.id.in_(service_ids)))
    return {r.id: r for r in rows}


def _value_cny(svc: ServiceRow | None, input_: int, cached: int, output: int) -> float:
    if svc is None:
        return 0.0
    return (
        input_ * svc.bid_cny_per_m_input_tokens
        + cached * svc.bid_cny_per_m_cached_input_tokens
        + output * svc.bid_cny_per_m_output_tokens
    ) / 1e6


def sum_token_usage(session: Session, f: UsageFilter, group_by: GroupBy) -> list[TokenUsageOut]:
    """Sums per group, each valued at its services' bids; ordered by the group's name."""
    group: dict[str, ColumnElement[Any] | InstrumentedAttribute[str]] = {
        "service": TokenUsage.service_id,
        "key": TokenUsage.key_id,
        "city": TokenUsage.city,
        "day": _day(session),
    }
    col = group[group_by].label("g")
    q = select(col, TokenUsage.service_id, *_sums()).group_by(col, TokenUsage.service_id)
    rows = session.execute(_where(q, f)).all()
    services = _bids(session, {r[1] for r in rows})
    keys: dict[str, InferenceKey] = {}
    if group_by == "key" and rows:
        found = session.scalars(
            select(InferenceKey).where(InferenceKey.id.in_({r[0] for r in rows}))
        )
        keys = {k.id: k for k in found}
    out: dict[str, TokenUsageOut] = {}
    for g, service_id, *sums in rows:
        n = [int(v) for v in sums]
        if g not in out:
            out[g] = _group_row(group_by, str(g), service_id, services, keys)
        acc = out[g]
        for name, v in zip(_TOKEN_SUMS, n, strict=True):
            setattr(acc, name, getattr(acc, name) + v)
        acc.value_cny += _value_cny(services.get(service_id), n[2], n[3], n[4])
    for acc in out.values():
        acc.value_cny = round(acc.value_cny, 6)
    return sorted(out.values(), key=lambda r: _order(r, group_by))


def _group_row(
    group_by: str,
    g: str,
    service_id: str,
    services: dict[str, ServiceRow],
    keys: dict[str, InferenceKey],
) -> TokenUsageOut:
    svc = services.get(service_id)
    if group_by == "service":
        return TokenUsageOut(service_id=g, service_name=svc.name if svc else None)
    if group_by == "key":
        key = keys.get(g)
        return TokenUsageOut(
            key_id=g,
            key_name=key.name if key else None,
            service_id=service_id,
            service_name=svc.name if svc else None,
        )
    if group_by == "city":
        return TokenUsageOut(city=g)
    return TokenUsageOut(day=g)


def _order(r: TokenUsageOut, group_by: str) -> tuple[str, str]:
    if group_by == "service":
        return (r.service_name or "", r.service_id or "")
    if group_by == "key":
        return (r.service_name or "", r.key_name or r.key_id or "")
    return (r.city or r.day or "", "")


def usage_csv(rows: Sequence[TokenUsageOut], group_by: GroupBy) -> str:
    """RFC 4180 CSV (CRLF line ends, quoted where needed): a header, then one line per
    group, in the JSON answer's order."""
    buf = io.StringIO()
    columns = CSV_COLUMNS[group_by]
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(columns)
    for r in rows:
        data = r.model_dump()
        w.writerow(["" if data[c] is None else data[c] for c in columns])
    return buf.getvalue()


# ----- traffic ----------------------------------------------------------------------------
_TRAFFIC_SUMS = (
    "requests",
    "prompt_tokens",
    "cached_tokens",
    "output_tokens",
    "slo_met",
    "slo_total",
    "rejected",
)


def service_traffic(session: Session, svc: ServiceRow, minutes: int, now: datetime) -> TrafficOut:
    """Measured traffic of ``svc`` per demand city over the last ``minutes``: rows whose
    window ended in it. Requests/s divide by the time since the window began, or since
    gateways first reported the service within it, whichever is later."""
    since = now - timedelta(minutes=minutes)
    sums = [func.coalesce(func.sum(getattr(ServiceTraffic, c)), 0) for c in _TRAFFIC_SUMS]
    q = (
        select(ServiceTraffic.city, func.min(ServiceTraffic.window_start), *sums)
        .where(ServiceTraffic.service_id == svc.id, ServiceTraffic.window_end > since)
        .group_by(ServiceTraffic.city)
    )
    rows = session.execute(q).all()
    first = min((r[1] for r in rows if r[1] is not None), default=since)
    span_s = max(1.0, (now - max(first, since)).total_seconds())
    planned = dict(svc.planned_demand_rps or {})
    cities = {c: TrafficCity(city=c, planned_rps=planned[c]) for c in planned}
    for city, _first, *values in rows:
        t = cities.setdefault(city, TrafficCity(city=city, planned_rps=planned.get(city)))
        _fill(t, [int(v) for v in values], span_s)
    total = TrafficCity(city="all", planned_rps=sum(planned.values()) if planned else None)
    _fill(total, [sum(getattr(t, c) for t in cities.values()) for c in _TRAFFIC_SUMS], span_s)
    return TrafficOut(
        service_id=svc.id,
        minutes=minutes,
        since=since,
        until=now,
        cities=sorted(cities.values(), key=lambda t: (-t.requests, t.city)),
        total=total,
        replicas=_replicas(session, svc.id),
    )


def _fill(t: TrafficCity, values: list[int], span_s: float) -> None:
    for name, v in zip(_TRAFFIC_SUMS, values, strict=True):
        setattr(t, name, v)
    t.rps = round(t.requests / span_s, 4)
    t.slo_attainment = t.slo_met / t.slo_total if t.slo_total else None


def _replicas(session: Session, service_id: str) -> list[ReplicaTraffic]:
    q = (
        select(AllocationRow, PoolRow.site_id, SiteRow.city)
        .outerjoin(PoolRow, PoolRow.id == AllocationRow.pool_id)
        .outerjoin(SiteRow, SiteRow.id == PoolRow.site_id)
        .where(AllocationRow.item_id == service_id, AllocationRow.active.is_(True))
        .order_by(AllocationRow.placed_at, AllocationRow.id)
    )
    return [
        ReplicaTraffic(
            allocation_id=a.id,
            pool_id=a.pool_id,
            site_id=site_id,
            city=city,
            endpoint=a.endpoint,
            health=a.health,
            gpus=a.gpus,
        )
        for a, site_id, city in session.execute(q)
    ]


# ----- invoices ---------------------------------------------------------------------------
def invoice_tokens(
    session: Session, tenant_id: str, after: datetime | None, until: datetime
) -> list[dict[str, Any]]:
    """Token quantities per service of ``tenant_id`` from the batches the exchange received
    in ``(after, until]``. Consecutive invoices take consecutive ranges of receipt time,
    so a token is on one invoice, even from a batch that arrived late."""
    q = (
        select(TokenUsage.service_id, *_sums())
        .join(GatewayBatch, GatewayBatch.batch_id == TokenUsage.batch_id)
        .where(TokenUsage.tenant_id == tenant_id, GatewayBatch.received_at <= until)
        .group_by(TokenUsage.service_id)
        .order_by(TokenUsage.service_id)
    )
    if after is not None:
        q = q.where(GatewayBatch.received_at > after)
    rows = session.execute(q).all()
    services = _bids(session, {r[0] for r in rows})
    out = []
    for service_id, *sums in rows:
        svc = services.get(service_id)
        line: dict[str, Any] = {"service_id": service_id, "service_name": svc.name if svc else None}
        line.update({name: int(v) for name, v in zip(_TOKEN_SUMS, sums, strict=True)})
        out.append(line)
    return out
