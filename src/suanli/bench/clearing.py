"""The clearing benchmark: every policy on one instance, measured in the same run."""

from __future__ import annotations

import time
from typing import Any

from suanli.bench.instances import build_instance
from suanli.errors import InvalidInput
from suanli.market.decision import Decision
from suanli.market.policies import POLICY_NAMES, make_policy

__all__ = ["run_clearing_bench", "slo_violations"]


def slo_violations(decision: Decision, ttft_ms: dict[str, float]) -> int:
    """Routes whose RTT + predicted prefill exceeds their service's TTFT."""
    return sum(
        1
        for s in decision.services
        for r in s.routes
        if r.rps > 1e-9 and r.rtt_ms + r.ttft_ms > ttft_ms[s.service_id] + 1e-9
    )


def run_clearing_bench(
    size: str, seed: int, policies: list[str], milp_time_limit_s: float
) -> dict[str, Any]:
    from suanli.bench.instances import SIZES

    if size not in SIZES:
        raise InvalidInput(f"unknown size {size!r}; choose from {', '.join(SIZES)}")
    for p in policies:
        if p not in POLICY_NAMES:
            raise InvalidInput(f"unknown policy {p!r}; choose from {', '.join(POLICY_NAMES)}")
    inst = build_instance(size, seed)
    snap = inst.snapshot
    ttft: dict[str, float] = {s.id: s.ttft_ms for s in snap.services}
    demand = sum(sum(s.demand_rps.values()) for s in snap.services)
    results: dict[str, tuple[Decision, float]] = {}
    for name in policies:
        policy = make_policy(name, inst.context, milp_time_limit_s=milp_time_limit_s)
        t0 = time.perf_counter()
        decision = policy.clear(snap)
        results[name] = (decision, time.perf_counter() - t0)
    lp = results.get("lp-bound")
    lp_welfare = lp[0].welfare_cny_per_hour if lp else None
    ex_time = results["exchange"][1] if "exchange" in results else None
    rows = []
    for name, (d, secs) in results.items():
        placing = name != "lp-bound"
        served = sum(s.served_rps for s in d.services)
        no_solution = name == "milp" and any("no solution" in n for n in d.notes)
        rows.append(
            {
                "policy": name,
                "welfare": None if no_solution else d.welfare_cny_per_hour,
                "share_of_lp": (
                    d.welfare_cny_per_hour / lp_welfare if lp_welfare and not no_solution else None
                ),
                "gpus_placed": d.gpus_placed if placing else None,
                "jobs_placed": len(d.jobs) if placing else None,
                "demand_served": served / demand if placing and demand else None,
                "slo_violations": slo_violations(d, ttft) if placing else None,
                "solve_s": secs,
                "exchange_speedup": (
                    secs / ex_time if ex_time and name in ("lp-bound", "milp") else None
                ),
            }
        )
    notes = [f"{name}: {n}" for name, (d, _) in results.items() for n in d.notes]
    return {
        "instance": inst.name,
        "pools": len(snap.pools),
        "jobs": len(snap.jobs),
        "services": len(snap.services),
        "cities": len({c for s in snap.services for c in s.demand_rps}),
        "demand_rps": demand,
        "rows": rows,
        "notes": notes,
    }
