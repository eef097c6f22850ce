"""A scenario small enough to check by hand (tests/sim/data/hand.toml).

One pool of 16 H800 GPUs (2 nodes × 8, speed 1 reference GPU each), reserve 10 yuan per
GPU-hour that never moves, PUE 1.2, power 0.36 yuan/kWh, capex 5 yuan per GPU-hour. Jobs
replay hand_jobs.csv: two pods of 8 GPUs × 2 h, one hour apart; at 1 job/h the replay puts
arrivals at 0, 1 and 2 h over the 3-hour run (the trace cycles every 2 jobs).

    job  arrives  placed  node  runs      delivered by 3 h
    A    0 h      0 h     0     0 – 2 h   8 × 2 = 16 GPU-h  (freed by the 2 h round)
    B    1 h      1 h     1     1 – 3 h   8 × 2 = 16 GPU-h
    C    2 h      2 h     0     2 – 4 h   8 × 1 =  8 GPU-h  (still running at the end)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from suanli.sim.scenario import Scenario
from suanli.sim.simulate import SimResult, simulate
from suanli.sim.traces import read_jobs_trace


@pytest.fixture(scope="module")
def run(hand: Scenario, data_dir: Path) -> SimResult:
    jobs = read_jobs_trace(data_dir / "hand_jobs.csv")
    return simulate(hand, ["exchange"], jobs_trace=jobs)


def test_jobs_arrive_on_the_replayed_schedule(run: SimResult) -> None:
    assert [j.submitted_at_h for j in run.workload.jobs] == [0.0, 1.0, 2.0]
    assert [(j.gpus, j.work_ref_gpu_hours) for j in run.workload.jobs] == [(8, 16.0)] * 3


def test_gpu_hours_by_hand(run: SimResult) -> None:
    s = run.results["exchange"].summary
    g = s["gpu_hours"]
    assert g["capacity"] == pytest.approx(48.0)  # 16 GPUs × 3 h
    assert g["delivered"] == pytest.approx(40.0)  # 16 + 16 + 8
    assert g["idle"] == pytest.approx(8.0)  # node 1 before B: 8 GPUs × 1 h
    assert g["held_after_finish"] == pytest.approx(0.0)  # A ends exactly on a round
    assert s["utilization"] == pytest.approx(40.0 / 48.0)


def test_jobs_by_hand(run: SimResult) -> None:
    j = run.results["exchange"].summary["jobs"]
    assert (j["arrived"], j["placed"], j["completed"], j["turned_away"]) == (3, 3, 2, 0)
    assert j["mean_wait_h"] == pytest.approx(0.0)  # each arrives on a round and fits
    assert j["delivered_ref_gpu_hours"] == pytest.approx(40.0)  # speed 1.0


def test_money_and_energy_by_hand(run: SimResult) -> None:
    s = run.results["exchange"].summary
    # No pool ever turns work away, so the price is the reserve: 10 yuan per GPU-hour.
    assert s["seller_revenue_cny"] == pytest.approx(400.0)  # 40 GPU-h × 10
    assert s["platform_fees_cny"] == pytest.approx(8.0)  # 2% fee on top
    assert s["buyer_cost_cny"] == pytest.approx(408.0)  # seller + fee, no voucher
    assert s["mean_price_cny_per_gpu_hour"] == pytest.approx(10.0)
    assert s["energy_kwh"] == pytest.approx(33.6)  # 40 GPU-h × 0.7 kW × PUE 1.2
    assert s["buyer_value_cny"] == pytest.approx(520.0)  # 40 ref GPU-h × bid 13
    assert s["buyer_surplus_cny"] == pytest.approx(112.0)  # 520 − 408


def test_site_profit_by_hand(run: SimResult) -> None:
    (site,) = run.results["exchange"].summary["sites"]
    assert site["power_cost_cny"] == pytest.approx(40 * 0.7 * 1.2 * 0.36)  # 12.096
    assert site["capex_cny"] == pytest.approx(48 * 5.0)  # all 16 GPUs × 3 h × 5
    assert site["profit_cny"] == pytest.approx(400 - 12.096 - 240)  # 147.904
    assert not site["distressed"]
