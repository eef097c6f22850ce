"""The simulator benchmark: a multi-day run per policy, timed and measured in isolation.

Each policy runs in its own fresh process (spawned), so its wall time, CPU time and peak
resident memory (``resource.getrusage``) are its own. Reported per policy: seconds per
simulated day and per clearing round, and the ratio to the exchange's time, measured in
the same run. CPU time is reported beside wall time because a shared machine inflates
wall time; neither is a pass/fail.
"""

from __future__ import annotations

import multiprocessing
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from suanli.sim.scenario import load_scenario
from suanli.sim.simulate import parse_policies, simulate

__all__ = ["run_simulate_bench"]


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _one(scenario: str, policy: str, days: float | None, seed: int | None) -> dict[str, Any]:
    sc = load_scenario(scenario)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    res = simulate(sc, [policy], days=days, seed=seed)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    r = res.results[policy]
    s = r.summary
    return {
        "policy": policy,
        "days": res.days,
        "rounds": r.rounds,
        "jobs": len(res.workload.jobs),
        "wall_s": wall,
        "cpu_s": cpu,
        "wall_s_per_day": wall / res.days,
        "wall_ms_per_round": 1000 * wall / max(r.rounds, 1),
        "cpu_ms_per_round": 1000 * cpu / max(r.rounds, 1),
        "peak_rss_mb": _peak_rss_mb(),
        "utilization": s["utilization"],
        "inference_served": s["inference"]["served_share"],
    }


def run_simulate_bench(
    scenario: str = "china-2025",
    days: float | None = 7.0,
    policies: str = "exchange,local,cheapest,nearest",
    seed: int | None = None,
) -> dict[str, Any]:
    """Time ``scenario`` for ``days`` under each policy, each in a fresh process."""
    names = parse_policies(policies)
    load_scenario(scenario)  # fail fast on a bad name, before spawning
    ctx = multiprocessing.get_context("spawn")
    rows = []
    for name in names:
        with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
            rows.append(pool.submit(_one, scenario, name, days, seed).result())
    ex = next((r for r in rows if r["policy"] == "exchange"), None)
    for r in rows:
        r["wall_vs_exchange"] = r["wall_s"] / ex["wall_s"] if ex else None
    return {"scenario": scenario, "rows": rows}
