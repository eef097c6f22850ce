"""The side-by-side table: one row per metric, one column per policy (or scenario)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["metric_rows"]

Getter = Callable[[Mapping[str, Any]], float | None]


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.1f}%"


def _num(digits: int, scale: float = 1.0) -> Callable[[float | None], str]:
    def fmt(v: float | None) -> str:
        return "—" if v is None else f"{v / scale:,.{digits}f}"

    return fmt


def _at(*keys: str) -> Getter:
    def get(summary: Mapping[str, Any]) -> float | None:
        value: Any = summary
        for k in keys:
            value = value.get(k) if isinstance(value, Mapping) else None
        return None if value is None else float(value)

    return get


Metric = tuple[str, Getter, Callable[[float | None], str]]


def _metrics(hubs: Sequence[tuple[str, str]], vouchers: Sequence[str]) -> list[Metric]:
    rows: list[Metric] = [
        ("GPU utilization", _at("utilization"), _pct),
        *((f"  utilization {n}", _at("utilization_by_hub", h), _pct) for h, n in hubs),
        ("work delivered (M ref GPU-h)", _at("jobs", "delivered_ref_gpu_hours"), _num(3, 1e6)),
        ("jobs arrived", _at("jobs", "arrived"), _num(0)),
        ("jobs placed", _at("jobs", "placed_share"), _pct),
        ("jobs turned away", _at("jobs", "turned_away_share"), _pct),
        ("  gave up waiting", _at("jobs", "gave_up"), _num(0)),
        ("  missed deadline", _at("jobs", "missed_deadline"), _num(0)),
        ("  preempted by outages", _at("jobs", "preempted"), _num(0)),
        ("mean wait to placement (h)", _at("jobs", "mean_wait_h"), _num(2)),
        ("inference served", _at("inference", "served_share"), _pct),
        ("inference turned away", _at("inference", "turned_away_share"), _pct),
        ("inference SLO attainment", _at("inference", "slo_attainment"), _pct),
        ("  served outside SLO", _at("inference", "slo_violation_share"), _pct),
        ("  planned / true demand", _at("inference", "planned_to_demand"), _num(2)),
        ("  replica load", _at("inference", "replica_load"), _pct),
        ("mean price (yuan/GPU-h)", _at("mean_price_cny_per_gpu_hour"), _num(2)),
        *((f"  price {n}", _at("price_by_hub", h), _num(2)) for h, n in hubs),
        ("buyer value served (M yuan)", _at("buyer_value_cny"), _num(2, 1e6)),
        ("buyer surplus (M yuan)", _at("buyer_surplus_cny"), _num(2, 1e6)),
        ("seller revenue (M yuan)", _at("seller_revenue_cny"), _num(2, 1e6)),
        ("buyer cost (M yuan)", _at("buyer_cost_cny"), _num(2, 1e6)),
        ("voucher spend (M yuan)", _at("voucher_spend_cny"), _num(3, 1e6)),
        *(
            row
            for v in vouchers
            for row in (
                (f"  {v}: spend (M yuan)", _at("vouchers", v, "spend_cny"), _num(3, 1e6)),
                (f"  {v}: buyers helped", _at("vouchers", v, "buyers_helped"), _num(0)),
                (f"  {v}: GPU-h funded", _at("vouchers", v, "gpu_hours"), _num(0)),
            )
        ),
        ("energy (MWh)", _at("energy_kwh"), _num(0, 1e3)),
        ("distressed sites (profit < 0)", _at("distressed_sites"), _num(0)),
        ("  revenue below power cost", _at("sites_below_power_cost"), _num(0)),
        ("stranded sites (<10% busy, last day)", _at("stranded_sites"), _num(0)),
        ("  their GPUs", _at("stranded_gpus"), _num(0)),
    ]
    return rows


def metric_rows(
    columns: Sequence[tuple[str, Mapping[str, Any]]], hubs: Sequence[tuple[str, str]]
) -> list[dict[str, str]]:
    """Rows keyed ``metric`` plus one key per column label, values formatted for people."""
    vouchers: list[str] = []
    for _, summary in columns:
        vouchers += [v for v in summary.get("vouchers", {}) if v not in vouchers]
    out = []
    for label, get, fmt in _metrics(hubs, vouchers):
        row = {"metric": label}
        for col, summary in columns:
            row[col] = fmt(get(summary))
        out.append(row)
    return out
