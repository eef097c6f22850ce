"""One clearing round, in one database transaction: rows → engine → rows.

1. Service replicas whose billing horizon has ended are settled and freed.
2. Pending jobs are locked; the pools on offer, their busy nodes and the voucher grants
   are read; an :class:`ExchangeState` is built from them.
3. ``advance`` fails pending jobs whose deadline passed (the engine's reason).
   Services enter whole when none of their replicas is live; a service with live
   replicas enters only for the planned demand they were not routed (a scale-up: its
   new replicas join the live ones, whose placements, holds and routes stay). Rounds
   between horizons only add replicas; they leave at their horizon (see ``round_plan``).
4. Admission: a buyer's pending work enters the round only while its wallet covers the
   most that work could cost at its bid, so every hold succeeds.
5. The exchange policy clears ``snapshot(now)``; ``apply(decision, start=False)`` takes
   concrete nodes. Each placement is held in the ledger and written with its reason.
6. The round and the prices that changed are recorded, with each service's routing plan
   (demand city → pool, requests/s) and the demand it planned for (measured by gateways
   where they measured it, see ``service_demand``).

Steps 2–5 (reading and solving) run outside any write lock; step 1 and the writes of
step 5–6 run in one write transaction that re-checks each placement against the rows
(the job still pending, its site still up) — only the clearing leader takes GPUs, so a
placement that was feasible when solved is still feasible unless its job or site
changed meanwhile. A crash anywhere rolls the whole round back: no partial round is
ever visible.
"""

from __future__ import annotations

import time

from suanli.service.round_plan import RoundSummary, plan_round
from suanli.service.round_write import write_round
from suanli.service.runtime import Runtime

__all__ = ["RoundSummary", "run_round"]


def run_round(rt: Runtime) -> RoundSummary:
    """Clear one round now and commit it; metrics are updated after the commit."""
    started = time.perf_counter()
    with rt.round_lock:
        now = rt.clock.now()
        with rt.db.read() as session:
            plan = plan_round(session, rt, now)
        summary = (
            rt.db.transact(lambda s: write_round(s, rt, plan, now)) if plan.writes else plan.summary
        )
    if plan.horizons_over or (plan.decision is not None and plan.decision.services):
        rt.serving_changes.bump()  # replicas and routes changed: wake gateways' polls
    if rt.last_prices is not None:
        rt.last_prices.update(summary.stored_prices)  # only once the round is committed
    m = rt.metrics
    m.rounds.labels("cleared" if summary.round_id is not None else "idle").inc()
    m.round_seconds.observe(time.perf_counter() - started)
    if summary.round_id is not None:
        m.solve_seconds.observe(summary.solve_s)
    m.pending_jobs.set(summary.pending_jobs - summary.jobs_placed - summary.expired)
    m.pending_services.set(summary.pending_services - summary.services_placed)
    m.placed.labels("job").inc(summary.jobs_placed)
    m.placed.labels("service").inc(summary.services_placed)
    m.gpus_offered.set(summary.gpus_offered)
    m.gpus_allocated.set(summary.gpus_allocated)
    m.utilization.set(summary.gpus_allocated / summary.gpus_offered if summary.gpus_offered else 0)
    for pool_id, price in summary.prices.items():
        m.price.labels(pool_id).set(price)
    return summary
