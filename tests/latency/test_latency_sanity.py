"""Sanity check against measurement: the model's hub-to-hub RTTs vs CAICT Q1 2024.

CAICT measured, between hub cities in Q1 2024: optical layer average 9.7 ms (max 17.1),
IP private network best path 14.6 ms (max 23.9), public internet 16.7 ms (max 28.7). The
report does not say whether these are one-way or round-trip. Our model gives round trips
at the MIIT 1.5× route target plus a 2 ms access assumption, so it should sit inside the
whole measured band: above the best (optical) average and below the worst (internet) max.
If CAICT meant one-way figures, real RTTs would be about double and the model would be
optimistic — which this test cannot tell apart, and the comment is here so nobody reads
more into it than that.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest

from suanli.catalog import load_catalog
from suanli.latency import LatencyParams, rtt

CAICT_OPTICAL_AVG_MS = 9.7
CAICT_INTERNET_MAX_MS = 28.7


@dataclass(frozen=True)
class Pt:
    name: str
    hub: str
    lat: float
    lon: float


# The 10 national data-center clusters by approximate location (city / new-area centres
# from public maps), with the hub each belongs to.
CLUSTERS = [
    Pt("Zhangjiakou", "Beijing-Tianjin-Hebei", 40.77, 114.88),
    Pt("Yangtze Delta demo zone", "Yangtze River Delta", 31.00, 120.90),
    Pt("Wuhu", "Yangtze River Delta", 31.33, 118.38),
    Pt("Shaoguan", "Greater Bay Area", 24.80, 113.60),
    Pt("Tianfu", "Chengdu-Chongqing", 30.40, 104.07),
    Pt("Chongqing", "Chengdu-Chongqing", 29.56, 106.55),
    Pt("Gui'an", "Guizhou", 26.40, 106.40),
    Pt("Horinger", "Inner Mongolia", 40.38, 111.82),
    Pt("Qingyang", "Gansu", 35.71, 107.64),
    Pt("Zhongwei", "Ningxia", 37.51, 105.19),
]


def between_hub_rtts_ms(params: LatencyParams) -> list[float]:
    return [
        rtt(a, b, params).rtt_ms for a, b in itertools.combinations(CLUSTERS, 2) if a.hub != b.hub
    ]


def test_mean_hub_to_hub_rtt_is_inside_caict_band() -> None:
    rtts = between_hub_rtts_ms(LatencyParams())
    assert len(rtts) == 43  # C(10, 2) = 45 pairs minus the 2 within YRD and Chengdu-Chongqing
    mean_ms = sum(rtts) / len(rtts)
    # Mean ≈ 18.9 ms: above the optical-layer average (9.7) and close to the IP private
    # network and public internet averages (14.6, 16.7).
    assert CAICT_OPTICAL_AVG_MS <= mean_ms <= CAICT_INTERNET_MAX_MS
    # The farthest pair (Zhangjiakou–Shaoguan ≈ 1,780 km → 2·1780·1.5/200 + 2 ≈ 28.7 ms)
    # stays at the public-internet maximum.
    assert max(rtts) <= CAICT_INTERNET_MAX_MS + 0.5


def test_inflation_is_what_keeps_it_in_band() -> None:
    # At inflation 4 every pair is far slower than any route CAICT saw: the check is not
    # vacuous, a badly mis-set model fails it.
    rtts = between_hub_rtts_ms(LatencyParams(route_inflation=4.0))
    assert sum(rtts) / len(rtts) > CAICT_INTERNET_MAX_MS


@pytest.mark.parametrize(
    ("a", "b", "expected_ms"),
    [
        # Horinger–Zhangjiakou ≈ 262 km: 2·262·1.5/200 + 2 ≈ 5.9 ms (neighbouring hubs)
        ("Horinger", "Zhangjiakou", 5.9),
        # Yangtze Delta–Zhongwei ≈ 1,612 km: 2·1612·1.5/200 + 2 ≈ 26.2 ms
        ("Yangtze Delta demo zone", "Zhongwei", 26.2),
    ],
)
def test_named_hub_pairs(a: str, b: str, expected_ms: float) -> None:
    by_name = {c.name: c for c in CLUSTERS}
    assert rtt(by_name[a], by_name[b]).rtt_ms == pytest.approx(expected_ms, abs=0.05)


def test_catalogue_hubs_mean_rtt_is_inside_caict_band() -> None:
    # The same check on the shipped catalogue's 8 hubs (each at its main cluster).
    hubs = list(load_catalog().hubs.values())
    rtts = [rtt(a, b).rtt_ms for a, b in itertools.combinations(hubs, 2)]
    assert len(rtts) == 28  # C(8, 2)
    mean_ms = sum(rtts) / len(rtts)
    # Mean ≈ 19.2 ms, between the optical average (9.7) and the internet maximum (28.7).
    assert CAICT_OPTICAL_AVG_MS <= mean_ms <= CAICT_INTERNET_MAX_MS
    # Farthest pair: Beijing-Tianjin-Hebei (Zhangjiakou)–Guizhou ≈ 1,780 km
    # → 2·1780·1.5/200 + 2 ≈ 28.7 ms, right at the measured public-internet maximum.
    assert max(rtts) <= CAICT_INTERNET_MAX_MS + 0.5
