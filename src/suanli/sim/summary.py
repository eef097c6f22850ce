"""A run's meter turned into the numbers a planner reads: one flat dict per policy.

Definitions (all over the simulated horizon T):

- utilization = delivered GPU-hours / (GPUs × T), overall and per hub;
- jobs placed / turned away: shares of the jobs that arrived; turned away = the buyer gave
  up after its patience, or the deadline passed before any pool took the job;
- inference served = served requests / demanded requests (the true demand, the requests
  that came); SLO attainment = requests served within TTFT (RTT + server-side TTFT ≤ SLO)
  / demanded requests; planned / demand = the requests/s the rounds planned for (the
  demand estimator's output) over the true ones; replica load = served requests / what
  the service replicas could serve (over-planning shows as idle replicas);
- mean price per hub = seller revenue / delivered GPU-hours there (yuan per GPU-hour);
- buyer value = what the buyers' bids say the work served was worth: reference GPU-hours
  delivered × the job's bid, plus requests served within SLO × the value of a request
  at the service's token bids (``market.valuation``); buyer surplus = value − what
  buyers paid;
- energy = delivered GPU-hours × TDP_kW × PUE;
- a site's profit = revenue − power (its delivered GPU-hours × power cost per GPU-hour) −
  capital (all its GPUs × T × capex per GPU-hour); distressed when negative;
- a site is stranded when less than 10% of its GPUs are busy, on average over the rounds
  of the run's last day (or the whole run, if shorter).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from suanli.sim.demand import Workload
from suanli.sim.metrics import Meter
from suanli.sim.world import World

__all__ = ["STRANDED_BELOW", "site_rows", "summarize"]

STRANDED_BELOW = 0.10
"""A site is stranded when under this share of its GPUs is busy over the run's last day."""


def _share(num: float, den: float) -> float | None:
    return num / den if den > 0 else None


def summarize(world: World, workload: Workload, meter: Meter, horizon_h: float) -> dict[str, Any]:
    """Everything the table, the JSON summary and the report show for one policy."""
    m = meter
    cap_h = world.capacity_gpus * horizon_h
    hub_of = np.array(world.pool_hub, dtype=object)
    util_by_hub: dict[str, float | None] = {}
    price_by_hub: dict[str, float | None] = {}
    for h in world.hubs:
        mask = hub_of == h
        util_by_hub[h] = _share(float(m.delivered[mask].sum()), float(cap_h[mask].sum()))
        price_by_hub[h] = _share(
            float(m.seller_fen[mask].sum()) / 100, float(m.delivered[mask].sum())
        )
    j = m.jobs
    turned_away = j.gave_up + j.missed_deadline
    waiting = j.arrived - j.placed - turned_away
    sites = site_rows(world, m, horizon_h)
    vouchers = {
        v.id: {
            "name": v.name,
            "budget_cny": v.budget_cny,
            "spend_cny": m.voucher_spend_fen.get(v.id, 0) / 100,
            "buyers_helped": len(m.voucher_buyers.get(v.id, ())),
            "gpu_hours": m.voucher_gpu_hours.get(v.id, 0.0),
        }
        for v in workload.vouchers
    }
    delivered = float(m.delivered.sum())
    return {
        "utilization": _share(delivered, float(cap_h.sum())),
        "utilization_by_hub": util_by_hub,
        "gpu_hours": {
            "capacity": float(cap_h.sum()),
            "delivered": delivered,
            "jobs": float(m.job_gpu_hours.sum()),
            "inference": delivered - float(m.job_gpu_hours.sum()),
            "idle": float(m.idle.sum()),
            "held_after_finish": float(m.held.sum()),
            "down": float(m.down.sum()),
        },
        "jobs": {
            "arrived": j.arrived,
            "placed": j.placed,
            "placed_share": _share(j.placed, j.arrived),
            "turned_away": turned_away,
            "turned_away_share": _share(turned_away, j.arrived),
            "gave_up": j.gave_up,
            "missed_deadline": j.missed_deadline,
            "waiting_at_end": waiting,
            "completed": j.completed,
            "preempted": j.preempted,
            "mean_wait_h": _share(j.wait_h_sum, j.placed),
            "arrived_ref_gpu_hours": j.arrived_ref_gpu_hours,
            "delivered_ref_gpu_hours": float(j.delivered_ref_gpu_hours),
        },
        "inference": {
            "mean_demand_rps": m.demand_rps_h / horizon_h,
            "served_share": _share(m.served_rps_h, m.demand_rps_h),
            "turned_away_share": (
                1.0 - m.served_rps_h / m.demand_rps_h if m.demand_rps_h > 0 else None
            ),
            "slo_attainment": _share(m.slo_ok_rps_h, m.demand_rps_h),
            "slo_violation_share": _share(m.served_rps_h - m.slo_ok_rps_h, m.served_rps_h),
            "mean_planned_rps": m.planned_rps_h / horizon_h,
            "planned_to_demand": _share(m.planned_rps_h, m.demand_rps_h),
            "replica_load": _share(m.served_rps_h, m.capacity_rps_h),
        },
        "mean_price_cny_per_gpu_hour": _share(float(m.seller_fen.sum()) / 100, delivered),
        "price_by_hub": price_by_hub,
        "buyer_value_cny": m.value_cny,
        "buyer_surplus_cny": m.value_cny - float(m.buyer_fen.sum()) / 100,
        "seller_revenue_cny": float(m.seller_fen.sum()) / 100,
        "buyer_cost_cny": float(m.buyer_fen.sum()) / 100,
        "voucher_spend_cny": float(m.voucher_fen.sum()) / 100,
        "platform_fees_cny": float(m.fee_fen.sum()) / 100,
        "vouchers": vouchers,
        "energy_kwh": float((m.delivered * world.kwh_per_gpu_hour).sum()),
        "distressed_sites": sum(1 for s in sites if s["distressed"]),
        "sites_below_power_cost": sum(1 for s in sites if s["revenue_cny"] < s["power_cost_cny"]),
        "stranded_sites": sum(1 for s in sites if s["stranded"]),
        "stranded_gpus": sum(s["gpus"] for s in sites if s["stranded"]),
        "sites": sites,
        "skipped_placements": m.skipped_placements,
    }


def site_rows(world: World, meter: Meter, horizon_h: float) -> list[dict[str, Any]]:
    """Per site: GPUs, utilization, revenue, power and capital cost, profit."""
    acc: dict[str, dict[str, float]] = {}
    for i, sid in enumerate(world.pool_site):
        a = acc.setdefault(
            sid,
            {
                "gpus": 0.0,
                "delivered": 0.0,
                "revenue": 0.0,
                "power": 0.0,
                "capex": 0.0,
                "busy": 0.0,
            },
        )
        cap = float(world.capacity_gpus[i])
        d = float(meter.delivered[i])
        a["gpus"] += cap
        a["delivered"] += d
        a["revenue"] += float(meter.seller_fen[i]) / 100
        a["power"] += d * float(world.power_cost_cny_per_gpu_hour[i])
        a["capex"] += cap * horizon_h * float(world.capex_cny_per_gpu_hour[i])
        a["busy"] += float(meter.busy_last_day[i]) / max(meter.rounds_last_day, 1)
    out = []
    for sid, a in acc.items():
        site = world.fleet.sites[sid]  # type: ignore[index]
        profit = a["revenue"] - a["power"] - a["capex"]
        gpu_h = a["gpus"] * horizon_h
        out.append(
            {
                "site": sid,
                "name": site.name,
                "hub": site.hub_id or "outside",
                "province": site.province,
                "lat": site.lat,
                "lon": site.lon,
                "gpus": int(a["gpus"]),
                "utilization": a["delivered"] / gpu_h if gpu_h else 0.0,
                "busy_share_last_day": a["busy"] / a["gpus"] if a["gpus"] else 0.0,
                "revenue_cny": a["revenue"],
                "power_cost_cny": a["power"],
                "capex_cny": a["capex"],
                "profit_cny": profit,
                "margin_cny_per_gpu_hour": profit / gpu_h if gpu_h else 0.0,
                "distressed": profit < 0,
                "stranded": a["gpus"] > 0 and a["busy"] / a["gpus"] < STRANDED_BELOW,
            }
        )
    return out
