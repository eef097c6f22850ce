"""The simulator plans each round from measured demand with the exchange's estimator.

Estimator defaults (``market.demand_estimate``): half-life 300 s, headroom 1.2, scale down
once the estimate stays below 75% of the plan for the hysteresis time. A 15-minute round
measured at rate x after a long stretch at rate w gives an estimate of
w/8 + 7x/8 (α = 1 − 2^(−900/300) = 7/8).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from suanli.domain import PoolId
from suanli.market.decision import Payment, ReplicaPlacement, Route, ServiceOutcome
from suanli.market.demand_estimate import EstimatorParams, Observation
from suanli.market.snapshot import BuyerId, InferenceService, ServiceId
from suanli.sim.demand import build_workload
from suanli.sim.metrics import RoundRow
from suanli.sim.scenario import Scenario
from suanli.sim.serving import Planner, serve
from suanli.sim.simulate import SimResult, simulate
from suanli.sim.world import build_world

ROUND_S = 900.0


def service(demand: dict[str, float]) -> InferenceService:
    return InferenceService(
        id=ServiceId("chat"),
        buyer=BuyerId("acme"),
        model="Qwen2.5-7B",
        demand_rps=demand,
        prompt_tokens=1000.0,
        output_tokens=250.0,
        ttft_ms=2000.0,
        tpot_ms=80.0,
        bid_cny_per_m_output_tokens=8.0,
        cached_fraction=0.5,
    )


def measured(rps: float) -> dict[str, Observation]:
    n = rps * ROUND_S
    return {"Shanghai": Observation(ROUND_S, n, n * 1000.0, n * 500.0, n * 250.0)}


def test_the_plan_follows_a_step_up_at_once_and_down_after_the_hysteresis() -> None:
    planner = Planner(EstimatorParams(down_after_s=1800.0))
    svc = service({"Shanghai": 10.0})
    h = ROUND_S / 3600.0
    # Before anything is measured: the declared demand.
    assert planner.plan(0, svc, None, 0.0) == {"Shanghai": 10.0}
    rates = [10.0] * 4 + [20.0] * 4 + [10.0] * 6
    plans = [
        planner.plan(0, svc, measured(x), (r + 1) * h)["Shanghai"] for r, x in enumerate(rates)
    ]
    assert plans[3] == pytest.approx(12.0)  # steady: 10 × headroom 1.2
    # Up at once: the first round measured at 20 plans 1.2 × (10/8 + 7·20/8) = 22.5.
    assert plans[4] == pytest.approx(22.5)
    assert plans[7] == pytest.approx(24.0, rel=1e-3)
    # Down: the estimate falls below 75% of 24 at the first round measured at 10 and stays
    # there; the plan holds for 1800 s (two rounds) and then follows: 1.2 × (10 + 10/8³).
    assert plans[8] == plans[9] == plans[7]
    assert plans[10] == pytest.approx(1.2 * (10.0 + 10.0 / 8**3))


def test_a_city_seen_with_no_requests_is_planned_at_zero_after_the_hysteresis() -> None:
    planner = Planner(EstimatorParams(down_after_s=0.0))
    svc = service({"Shanghai": 10.0})
    assert planner.plan(0, svc, measured(0.0), 0.25)["Shanghai"] == 0.0


# ------------------------------------------------------------------ whole runs


@pytest.fixture(scope="module")
def step(tiny: Scenario) -> SimResult:
    """One flat chat service (no diurnal swing) whose demand doubles from 6 h to 12 h."""
    doc: dict[str, Any] = tiny.model_dump()
    doc["outages"] = []
    doc["batch"]["jobs_per_hour"] = 0.0
    doc["inference"]["diurnal"] = {"peak_hour": 21.0, "peak_to_trough": 1.0}
    doc["inference"]["services"] = doc["inference"]["services"][:1]
    doc["inference"]["estimator"] = {"down_after_s": 3600.0}
    doc["mix"] = [
        {"day": 0.0, "inference": 1.0},
        {"day": 0.25, "inference": 1.0},
        {"day": 0.2501, "inference": 2.0},
        {"day": 0.5, "inference": 2.0},
        {"day": 0.5001, "inference": 1.0},
    ]
    return simulate(Scenario.model_validate(doc), ["exchange"], days=0.75)


def rows_at(result: SimResult) -> dict[float, RoundRow]:
    return {round(r.t_h, 2): r for r in result.results["exchange"].rows}


def test_planned_demand_follows_a_step_in_true_demand(step: SimResult) -> None:
    rows = rows_at(step)
    base = rows[5.0].demand_rps  # 60 req/s, flat
    assert rows[6.25].demand_rps == pytest.approx(2 * base)
    # The round the step happens in was planned before it was measured: under-planned,
    # and what the replicas could not take is unserved.
    assert rows[6.25].planned_rps < rows[6.25].demand_rps
    assert rows[6.25].served_rps < rows[6.25].demand_rps
    # The next round plans for it (with headroom) and serves it all.
    assert rows[6.5].planned_rps >= rows[6.5].demand_rps
    assert rows[6.5].served_rps == pytest.approx(rows[6.5].demand_rps)
    # Down at 12.25 h, measured at 12.5 h; the plan holds for the 3600 s hysteresis.
    for t in (12.25, 12.5, 12.75, 13.0, 13.25):
        assert rows[t].planned_rps > 1.5 * rows[t].demand_rps, t
    assert rows[13.5].planned_rps == pytest.approx(1.2 * base, rel=0.02)


def test_the_summary_reports_planned_against_true_demand(step: SimResult) -> None:
    inf = step.results["exchange"].summary["inference"]
    rows = step.results["exchange"].rows
    planned = np.mean([r.planned_rps for r in rows])
    true = np.mean([r.demand_rps for r in rows])
    assert inf["mean_planned_rps"] == pytest.approx(planned)
    assert inf["planned_to_demand"] == pytest.approx(planned / true)
    assert 1.1 < inf["planned_to_demand"] < 1.4  # headroom 1.2, plus the held plan
    assert 0 < inf["replica_load"] < 1  # over-planning leaves replicas idle
    assert inf["served_share"] < 1  # the rounds that under-planned


def test_arrivals_are_drawn_once_per_seed(tiny: Scenario) -> None:
    world = build_world(tiny)
    a = build_workload(tiny, world, days=0.5)
    b = build_workload(tiny, world, days=0.5)
    c = build_workload(tiny, world, days=0.5, seed=tiny.seed + 1)
    assert len(a.arrivals) == len(a.services)
    assert a.arrivals[0].shape == (48, 2)  # 48 rounds × Shanghai, Hangzhou
    for x, y in zip(a.arrivals, b.arrivals, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.arrivals[0], c.arrivals[0])
    # Poisson counts at the true rate over the 900 s round.
    expect = sum(a.demand_rps(0, 0.0).values()) * 900.0
    assert a.arrivals[0][0].sum() == pytest.approx(expect, rel=0.02)
    obs = a.measured(0, 0)
    assert obs is not None
    svc = a.services[0]
    sh = obs["Shanghai"]
    assert sh.prompt_tokens == pytest.approx(sh.requests * svc.prompt_tokens)
    assert sh.output_tokens == pytest.approx(sh.requests * svc.output_tokens)


def test_the_estimator_in_the_sim_is_deterministic(tiny: Scenario, step: SimResult) -> None:
    doc = step.scenario.model_dump()
    again = simulate(Scenario.model_validate(doc), ["exchange"], days=0.75)
    assert [r.planned_rps for r in again.results["exchange"].rows] == [
        r.planned_rps for r in step.results["exchange"].rows
    ]


def test_replicas_serve_the_true_demand_up_to_their_capacity() -> None:
    # Shanghai was planned at 12 req/s, routed 8 to pool a and 4 to pool b; Hangzhou was
    # left out. Pool a holds 10 req/s of replicas, pool b 5.
    out = ServiceOutcome(
        service_id="chat",
        buyer="acme",
        replicas=(
            ReplicaPlacement("chat", PoolId("a"), 2, 1, 5.0),
            ReplicaPlacement("chat", PoolId("b"), 1, 1, 5.0),
        ),
        routes=(
            Route("chat", "Shanghai", PoolId("a"), 8.0, 10.0, 500.0),
            Route("chat", "Shanghai", PoolId("b"), 4.0, 30.0, 1990.0),
        ),
        demand_rps=12.0,
        served_rps=12.0,
        payment=Payment(0, 0, 0, 0),
    )
    # 9 req/s come: 6 to a, 3 to b (the routes' shares); all served, b's late for a 2 s SLO.
    got = serve(out, {"Shanghai": 9.0, "Hangzhou": 3.0}, 2000.0)
    assert got.routes == [("a", pytest.approx(6.0), True), ("b", pytest.approx(3.0), False)]
    assert got.capacity == {"a": 10.0, "b": 5.0}
    # 18 req/s come: 12 to a (10 served), 6 to b (5 served); Hangzhou is never served.
    got = serve(out, {"Shanghai": 18.0, "Hangzhou": 3.0}, 2000.0)
    assert [x for _, x, _ in got.routes] == [pytest.approx(10.0), pytest.approx(5.0)]
