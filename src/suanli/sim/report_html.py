"""The offline HTML report of a run: one self-contained file, charts as inline SVG.

Sections: what was run; the side-by-side table; utilization and inference served over
time for every policy; then per policy, utilization and posted prices by hub over time,
a map of sites coloured by utilization, and each site's profit and loss (revenue − power
− capital) so distressed sites stand out. No scripts, no external files.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape
from typing import Any

from suanli.sim.metrics import RoundRow
from suanli.sim.simulate import SimResult
from suanli.sim.svg import Bar, MapPoint, Series, bar_chart, line_chart, map_chart
from suanli.sim.table import metric_rows

__all__ = ["hub_names", "render_report"]

_CSS = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; max-width: 1100px; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 32px; } h3 { font-size: 15px; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.note { color: #555; font-size: 13px; }
.charts { display: flex; flex-wrap: wrap; gap: 12px; }
"""
_MAX_POINTS = 400


def hub_names(result: SimResult) -> list[tuple[str, str]]:
    hubs = result.world.ctx.hubs
    return [(h, hubs[h].name if h in hubs else "outside the hubs") for h in result.world.hubs]


def render_report(result: SimResult) -> str:
    """The whole report as one HTML document."""
    sc = result.scenario
    names = hub_names(result)
    policies = list(result.results)
    cols = [(p, r.summary) for p, r in result.results.items()]
    fleet = result.world.fleet
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>suanli simulation — {escape(sc.name)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Simulation: {escape(sc.name)}</h1>",
        f"<p>{escape(sc.description)}</p>",
        "<p class='note'>"
        + escape(
            f"{result.days:g} simulated days, a clearing round every "
            f"{result.period_h * 60:g} min, seed {result.seed}; fleet {fleet.name}: "
            f"{len(fleet.sites)} sites, {len(fleet.pools)} pools, "
            f"{int(result.world.capacity_gpus.sum()):,} GPUs; "
            f"{len(result.workload.jobs):,} batch jobs, "
            f"{len(result.workload.services)} inference services, "
            f"{len(result.workload.vouchers)} voucher programs, "
            f"{len(result.workload.outages)} site outages."
        )
        + "</p>",
    ]
    parts += [f"<p class='note'>{escape(n)}</p>" for n in result.workload.notes]
    parts.append("<h2>Policies side by side</h2>")
    parts.append(_table(metric_rows(cols, names), ["metric", *policies]))
    parts.append("<div class='charts'>")
    parts.append(
        line_chart(
            [_series(p, r.rows, _overall_util) for p, r in result.results.items()],
            title="GPU utilization, all hubs",
            x_label="simulated hours",
            y_label="busy share",
            y_max=1.0,
        )
    )
    parts.append(
        line_chart(
            [_series(p, r.rows, _slo_share) for p, r in result.results.items()],
            title="Inference demand served within SLO",
            x_label="simulated hours",
            y_label="share of demand",
            y_max=1.0,
        )
    )
    parts.append("</div>")
    for p, r in result.results.items():
        parts.append(f"<h2>Policy: {escape(p)}</h2><div class='charts'>")
        parts.append(
            line_chart(
                [_hub_series(label, r.rows, i, "util") for i, (_, label) in enumerate(names)],
                title=f"{p}: utilization by hub",
                x_label="simulated hours",
                y_label="busy share",
                y_max=1.0,
            )
        )
        parts.append(
            line_chart(
                [_hub_series(label, r.rows, i, "price") for i, (_, label) in enumerate(names)],
                title=f"{p}: posted price by hub (capacity-weighted)",
                x_label="simulated hours",
                y_label="yuan per GPU-hour",
            )
        )
        parts.append(_map(p, r.summary, _hub_labels(result)))
        parts.append(_pnl(p, r.summary))
        parts.append("</div>")
        parts.append(_distressed(r.summary))
    parts.append("</body></html>")
    return "\n".join(parts)


def _table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(str(row.get(c, '')))}</td>" for c in columns) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _stride(rows: Sequence[RoundRow]) -> Sequence[RoundRow]:
    step = max(1, math.ceil(len(rows) / _MAX_POINTS))
    return rows[::step]


def _overall_util(row: RoundRow) -> float:
    up = sum(row.up_by_hub)
    return sum(row.busy_by_hub) / up if up else math.nan


def _slo_share(row: RoundRow) -> float:
    return row.slo_ok_rps / row.demand_rps if row.demand_rps > 0 else math.nan


def _series(name: str, rows: Sequence[RoundRow], f: Any) -> Series:
    rs = _stride(rows)
    return Series(name, [r.t_h for r in rs], [f(r) for r in rs])


def _hub_series(name: str, rows: Sequence[RoundRow], i: int, what: str) -> Series:
    rs = _stride(rows)
    if what == "util":
        ys = [r.busy_by_hub[i] / r.up_by_hub[i] if r.up_by_hub[i] else math.nan for r in rs]
    else:
        ys = [r.price_by_hub[i] for r in rs]
    return Series(name, [r.t_h for r in rs], ys)


def _hub_labels(result: SimResult) -> list[tuple[float, float, str]]:
    hubs = result.world.ctx.hubs
    return [(hubs[h].lon, hubs[h].lat, hubs[h].name) for h in result.world.hubs if h in hubs]


def _map(policy: str, summary: dict[str, Any], labels: list[tuple[float, float, str]]) -> str:
    sites = summary["sites"]
    biggest = max((s["gpus"] for s in sites), default=1) or 1
    points = [
        MapPoint(
            lon=s["lon"],
            lat=s["lat"],
            value=s["utilization"],
            radius=2.5 + 9.0 * math.sqrt(s["gpus"] / biggest),
            label=(
                f"{s['name']} ({s['site']}, {s['hub']}): {s['gpus']:,} GPUs, "
                f"{100 * s['utilization']:.1f}% busy, profit {s['profit_cny']:,.0f} yuan"
            ),
        )
        for s in sites
    ]
    return map_chart(points, title=f"{policy}: sites by utilization (size ∝ GPUs)", labels=labels)


def _pnl(policy: str, summary: dict[str, Any]) -> str:
    sites = sorted(summary["sites"], key=lambda s: s["profit_cny"])
    bars = [
        Bar(
            label=f"{s['name']} ({s['hub']})",
            value=s["profit_cny"],
            note=(
                f"revenue {s['revenue_cny']:,.0f}, power {s['power_cost_cny']:,.0f}, "
                f"capital {s['capex_cny']:,.0f} yuan; {100 * s['utilization']:.1f}% busy"
            ),
        )
        for s in sites
    ]
    return bar_chart(
        bars,
        title=f"{policy}: profit per site over the run (revenue − power − capital)",
        y_label="yuan",
    )


def _distressed(summary: dict[str, Any]) -> str:
    sites = sorted(summary["sites"], key=lambda s: s["margin_cny_per_gpu_hour"])[:12]
    rows = [
        {
            "site": f"{s['name']} ({s['site']})",
            "hub": s["hub"],
            "GPUs": f"{s['gpus']:,}",
            "busy": f"{100 * s['utilization']:.1f}%",
            "busy last day": f"{100 * s['busy_share_last_day']:.1f}%",
            "revenue (yuan)": f"{s['revenue_cny']:,.0f}",
            "power (yuan)": f"{s['power_cost_cny']:,.0f}",
            "capital (yuan)": f"{s['capex_cny']:,.0f}",
            "margin (yuan/GPU-h)": f"{s['margin_cny_per_gpu_hour']:.2f}",
        }
        for s in sites
    ]
    columns = list(rows[0]) if rows else ["site"]
    return (
        f"<h3>Most distressed sites ({summary['distressed_sites']} of "
        f"{len(summary['sites'])} lose money)</h3>" + _table(rows, columns)
    )
