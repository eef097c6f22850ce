"""Files a run writes: a JSON summary, CSV time series and the HTML report."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from suanli.errors import InvalidInput
from suanli.sim.report_html import render_report
from suanli.sim.simulate import SimResult

__all__ = ["jsonable", "result_document", "write_outputs"]


def jsonable(value: Any) -> Any:
    """Plain JSON types: NaN and infinities become null, numpy scalars Python numbers."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def result_document(result: SimResult) -> dict[str, Any]:
    """The JSON summary: what was run and every policy's numbers."""
    sc = result.scenario
    fleet = result.world.fleet
    doc: dict[str, Any] = jsonable(
        {
            "scenario": sc.name,
            "description": sc.description,
            "seed": result.seed,
            "days": result.days,
            "period_min": result.period_h * 60.0,
            "fleet": {
                "name": fleet.name,
                "sites": len(fleet.sites),
                "pools": len(fleet.pools),
                "gpus": int(result.world.capacity_gpus.sum()),
            },
            "workload": {
                "jobs": len(result.workload.jobs),
                "services": [s.id for s in result.workload.services],
                "vouchers": [v.id for v in result.workload.vouchers],
                "outages": len(result.workload.outages),
                "notes": list(result.workload.notes),
            },
            "policies": {
                p: {**r.summary, "rounds": r.rounds, "wall_s": r.wall_s}
                for p, r in result.results.items()
            },
        }
    )
    return doc


def write_outputs(result: SimResult, out_dir: Path) -> list[Path]:
    """Write summary.json, timeseries.csv, rounds.csv and report.html into ``out_dir``."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidInput(f"--out {out_dir}: cannot create the directory ({exc})") from None
    summary = out_dir / "summary.json"
    summary.write_text(
        json.dumps(result_document(result), ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
    )
    series = out_dir / "timeseries.csv"
    hubs = result.world.hubs
    with series.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(
            [
                "policy",
                "t_h",
                "hub",
                "busy_gpus",
                "up_gpus",
                "utilization",
                "price_cny_per_gpu_hour",
            ]
        )
        for p, r in result.results.items():
            for row in r.rows:
                for i, h in enumerate(hubs):
                    up, busy, price = row.up_by_hub[i], row.busy_by_hub[i], row.price_by_hub[i]
                    w.writerow(
                        [
                            p,
                            f"{row.t_h:.4f}",
                            h,
                            f"{busy:.0f}",
                            f"{up:.0f}",
                            f"{busy / up:.4f}" if up else "",
                            f"{price:.4f}" if math.isfinite(price) else "",
                        ]
                    )
    rounds = out_dir / "rounds.csv"
    with rounds.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(
            [
                "policy",
                "t_h",
                "jobs_pending",
                "jobs_running",
                "jobs_placed",
                "demand_rps",
                "served_rps",
                "slo_ok_rps",
                "planned_rps",
            ]
        )
        for p, r in result.results.items():
            for row in r.rows:
                w.writerow(
                    [
                        p,
                        f"{row.t_h:.4f}",
                        row.jobs_pending,
                        row.jobs_running,
                        row.jobs_placed,
                        f"{row.demand_rps:.3f}",
                        f"{row.served_rps:.3f}",
                        f"{row.slo_ok_rps:.3f}",
                        f"{row.planned_rps:.3f}",
                    ]
                )
    report = out_dir / "report.html"
    report.write_text(render_report(result), encoding="utf-8")
    return [summary, series, rounds, report]
