"""Whole runs on the tiny scenario: determinism, conservation of GPU-hours, outages."""

from __future__ import annotations

import numpy as np
import pytest

from suanli.sim.demand import build_workload
from suanli.sim.outputs import result_document
from suanli.sim.runner import PolicyRun
from suanli.sim.scenario import Scenario
from suanli.sim.simulate import SimResult, simulate
from suanli.sim.world import build_world


def variant(sc: Scenario, **changes: object) -> Scenario:
    return Scenario.model_validate({**sc.model_dump(), **changes})


@pytest.fixture(scope="module")
def tiny_run(tiny: Scenario) -> SimResult:
    return simulate(tiny, ["exchange", "local", "cheapest"], days=0.5)


def _strip_wall(doc: dict[str, object]) -> dict[str, object]:
    policies = doc["policies"]
    assert isinstance(policies, dict)
    return {**doc, "policies": {p: {**v, "wall_s": 0} for p, v in policies.items()}}


def test_same_scenario_and_seed_give_identical_results(tiny: Scenario, tiny_run: SimResult) -> None:
    again = simulate(tiny, ["exchange", "local", "cheapest"], days=0.5)
    assert _strip_wall(result_document(again)) == _strip_wall(result_document(tiny_run))
    for p in tiny_run.results:
        assert again.results[p].rows == tiny_run.results[p].rows


def test_another_seed_gives_another_workload(tiny: Scenario, tiny_run: SimResult) -> None:
    other = simulate(tiny, ["exchange"], days=0.5, seed=tiny.seed + 1)
    a = [(j.submitted_at_h, j.gpus) for j in tiny_run.workload.jobs]
    b = [(j.submitted_at_h, j.gpus) for j in other.workload.jobs]
    assert a != b


@pytest.mark.parametrize("policy", ["exchange", "local", "nearest"])
def test_gpu_hours_are_conserved_per_pool(tiny: Scenario, policy: str) -> None:
    # An outage at 6–9 h and random failures preempt work mid-run; per pool,
    # delivered + idle + held + down must still equal capacity × time.
    sc = variant(tiny, random_outages={"per_site_per_day": 2.0, "mean_duration_h": 1.5})
    world = build_world(sc)
    workload = build_workload(sc, world, days=0.5)
    assert workload.outages  # the run does go through failures
    run = PolicyRun(world, workload, policy, sc.sellers, period_h=0.25, horizon_h=12.0)
    m = run.run()
    capacity = world.capacity_gpus * 12.0
    total = m.delivered + m.idle + m.held + m.down
    np.testing.assert_allclose(total, capacity, rtol=1e-9)
    assert m.down.sum() > 0 and m.delivered.sum() > 0


def test_an_outage_preempts_work_and_it_is_placed_again(tiny: Scenario) -> None:
    # zw-01 (128 H800) is dark from 6 h to 9 h: jobs running there lose their place.
    res = simulate(tiny, ["exchange"], days=0.5)
    s = res.results["exchange"].summary
    assert s["jobs"]["preempted"] > 0
    rows = res.results["exchange"].rows
    ningxia = res.world.hubs.index("ningxia")
    during = [r for r in rows if 6.0 <= r.t_h < 9.0]
    after = [r for r in rows if r.t_h >= 9.0]
    assert all(r.up_by_hub[ningxia] == 0 for r in during)
    assert all(r.up_by_hub[ningxia] == 128 for r in after)
    assert s["gpu_hours"]["down"] == pytest.approx(128 * 3.0)  # 128 GPUs × 3 h


def test_the_latency_blind_broker_breaks_slos_the_exchange_meets(tiny: Scenario) -> None:
    # Make the far pool the cheap one: Zhongwei's H800 at 2 yuan vs Shanghai's at 12.
    # A 90 ms voice service from Shanghai cannot be served from Zhongwei in time: prefill
    # on an H800 takes ≈72 ms at the server, the Shanghai→Zhongwei RTT 26.7 ms.
    doc = tiny.model_dump()
    doc["outages"] = []
    doc["fleet"]["add_pools"][2]["reserve_cny_per_gpu_hour"] = 2.0
    doc["inference"]["services"][1]["ttft_ms"] = 90.0
    sc = Scenario.model_validate(doc)
    res = simulate(sc, ["exchange", "cheapest"], days=0.25)
    ex, ch = (res.results[p].summary["inference"] for p in ("exchange", "cheapest"))
    assert ex["slo_attainment"] == pytest.approx(ex["served_share"])  # nothing served late
    # Not quite all served: the first round plans the declared daily mean before anything
    # is measured, and at midnight the true demand is 1.35× that (about 1% of the run's
    # requests; see test_sim_estimator).
    assert ex["slo_attainment"] > 0.98
    assert ch["slo_violation_share"] > 0.1
    assert ch["slo_attainment"] < ex["slo_attainment"]


def test_the_exchange_serves_more_than_local_markets(tiny_run: SimResult) -> None:
    ex = tiny_run.results["exchange"].summary
    lo = tiny_run.results["local"].summary
    assert ex["jobs"]["placed_share"] > lo["jobs"]["placed_share"]
    assert ex["jobs"]["delivered_ref_gpu_hours"] > lo["jobs"]["delivered_ref_gpu_hours"]


def test_money_balances(tiny_run: SimResult) -> None:
    for r in tiny_run.results.values():
        s = r.summary
        # buyer + voucher = seller + fee, to the fen (rounding of captured shares aside)
        lhs = s["buyer_cost_cny"] + s["voucher_spend_cny"]
        assert lhs == pytest.approx(s["seller_revenue_cny"] + s["platform_fees_cny"], abs=0.05)


def test_worker_processes_give_the_same_results(tiny: Scenario, tiny_run: SimResult) -> None:
    ticks: list[str] = []
    par = simulate(
        tiny, ["exchange", "local", "cheapest"], days=0.5, workers=2, on_round=ticks.append
    )
    assert _strip_wall(result_document(par)) == _strip_wall(result_document(tiny_run))
    # every round of every policy reported its progress: 0.5 days = 48 rounds each
    assert sorted(set(ticks)) == ["cheapest", "exchange", "local"]
    assert len(ticks) == 3 * 48
