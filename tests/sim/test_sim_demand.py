"""The workload: diurnal curve, mix over time, Poisson arrivals, vouchers, outages."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from suanli.errors import InvalidInput
from suanli.sim.demand import build_workload, diurnal_factor
from suanli.sim.scenario import Scenario
from suanli.sim.world import build_world


@pytest.mark.parametrize(
    ("clock_h", "expected"),
    [
        (21.0, 1.5),  # peak: 1 + a, a = (3 − 1)/(3 + 1) = 0.5
        (9.0, 0.5),  # 12 h later: the trough, 1 − a
        (3.0, 1.0),  # 6 h from the peak: cos(π/2) = 0
        (45.0, 1.5),  # the next day's peak
    ],
)
def test_diurnal_factor(clock_h: float, expected: float) -> None:
    assert diurnal_factor(clock_h, 21.0, 0.5) == pytest.approx(expected)


def test_diurnal_mean_over_a_day_is_one() -> None:
    hours = np.arange(0, 24, 0.25)
    assert np.mean([diurnal_factor(h, 21.0, 0.5) for h in hours]) == pytest.approx(1.0)


def variant(sc: Scenario, **changes: object) -> Scenario:
    return Scenario.model_validate({**sc.model_dump(), **changes})


def test_service_demand_follows_curve_and_mix(tiny: Scenario) -> None:
    sc = variant(tiny, mix=[{"day": 0, "inference": 1.0}, {"day": 1, "inference": 3.0}])
    wl = build_workload(sc, build_world(sc), days=1)
    # chat: 60 req/s over Shanghai and Hangzhou by GDP weight; start_hour 0, peak 21 h
    base = sum(wl.demand[0].base_rps.values())
    assert base == pytest.approx(60.0)
    at = 12.0  # clock 12 h: cos(2π·(12 − 21)/24) = cos(−2.356) = −0.7071; mix at day 0.5 = 2
    expected = 60.0 * (1 + 0.5 * math.cos(2 * math.pi * (12 - 21) / 24)) * 2.0
    assert sum(wl.demand_rps(0, at).values()) == pytest.approx(expected)
    assert wl.demand_rps(0, at)["Shanghai"] > wl.demand_rps(0, at)["Hangzhou"]


def test_job_arrivals_are_poisson_at_the_scenario_rate(tiny: Scenario) -> None:
    sc = variant(tiny, batch={**tiny.batch.model_dump(), "jobs_per_hour": 50})
    wl = build_workload(sc, build_world(sc), days=4)
    times = np.array([j.submitted_at_h for j in wl.jobs])
    # 50 jobs/h × 96 h = 4,800 expected; Poisson sd ≈ 69, so ±5% is > 3 sd
    assert len(times) == pytest.approx(4800, rel=0.05)
    assert np.all(np.diff(times) >= 0) and times[0] >= 0 and times[-1] < 96.0
    gaps = np.diff(times)
    assert gaps.mean() == pytest.approx(1 / 50, rel=0.05)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.1)  # exponential gaps: CV 1


def test_mix_thins_batch_arrivals(tiny: Scenario) -> None:
    sc = variant(
        tiny,
        batch={**tiny.batch.model_dump(), "jobs_per_hour": 40},
        mix=[{"day": 0, "batch": 1.0}, {"day": 2, "batch": 0.0}],
    )
    wl = build_workload(sc, build_world(sc), days=2)
    t = np.array([j.submitted_at_h for j in wl.jobs])
    # the rate falls linearly from 40/h to 0: day 1 gets 3/4 of the 960 jobs, day 2 1/4
    first, second = int((t < 24).sum()), int((t >= 24).sum())
    assert first + second == pytest.approx(960, rel=0.08)
    assert first / (first + second) == pytest.approx(0.75, abs=0.04)


def test_vouchers_are_prorated_and_cover_their_cities(tiny: Scenario) -> None:
    sc = variant(
        tiny,
        vouchers=[
            {
                "id": "sh",
                "coverage": 0.3,
                "budget_cny_per_year": 365e6,
                "per_buyer_cap_cny_per_year": 3.65e6,
                "buyer_cities": ["上海"],
            },
            {
                "id": "qy",
                "coverage": 0.3,
                "budget_cny_per_year": 1e8,
                "eligible_provinces": ["甘肃"],
            },
        ],
    )
    wl = build_workload(sc, build_world(sc), days=2)
    sh, qy = wl.vouchers
    assert sh.budget_cny == pytest.approx(2e6)  # 365M × 48 h / 8,760 h
    assert sh.per_buyer_cap_cny == pytest.approx(2e4)
    assert sh.eligible_buyers is not None and "shanghai-00" in sh.eligible_buyers
    assert len(sh.eligible_buyers) == tiny.batch.buyers_per_city
    assert qy.eligible_provinces == frozenset({"Gansu"})
    # every Shanghai job's buyer is covered by the Shanghai program
    assert all(j.buyer in sh.eligible_buyers for j in wl.jobs if j.origin_city == "Shanghai")


def test_outages_resolve_to_sites_and_random_ones_merge(tiny: Scenario) -> None:
    sc = variant(
        tiny,
        outages=[{"hub": "ningxia", "start_h": 2, "duration_h": 3}],
        random_outages={"per_site_per_day": 3.0, "mean_duration_h": 1.0},
    )
    wl = build_workload(sc, build_world(sc), days=1)
    assert any(o.site_id == "zw-01" and o.start_h <= 2 < o.end_h for o in wl.outages)
    for site in ("sh-01", "zw-01", "qy-01"):
        spans = sorted((o.start_h, o.end_h) for o in wl.outages if o.site_id == site)
        # merged: no two outages of one site overlap, and all end by the horizon
        assert all(a[1] < b[0] for a, b in itertools.pairwise(spans))
        assert all(0 <= s < e <= 24 for s, e in spans)


def test_an_unknown_city_is_named(tiny: Scenario) -> None:
    doc = tiny.model_dump()
    doc["inference"]["services"][0]["cities"] = ["Atlantis"]
    sc = Scenario.model_validate(doc)
    with pytest.raises(InvalidInput, match=r"inference\.services\.0 \(chat\).*Atlantis"):
        build_workload(sc, build_world(sc), days=1)
