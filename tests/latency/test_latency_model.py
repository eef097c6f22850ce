"""The geographic RTT model: distances, the RTT formula, derivations, overrides."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest

from suanli.domain import City, Region
from suanli.errors import InvalidInput
from suanli.latency import (
    LatencyParams,
    MeasuredMatrix,
    MeasuredRtt,
    RttMethod,
    haversine_km,
    latency_circle_ms,
    measured_overrides,
    model_rtt_ms,
    rtt,
    rtt_matrix_for,
    rtt_matrix_ms,
)


@dataclass(frozen=True)
class Pt:
    name: str
    lat: float
    lon: float


SHANGHAI = Pt("Shanghai", 31.23, 121.47)
ZHONGWEI = Pt("Zhongwei", 37.51, 105.19)
BEIJING = Pt("Beijing", 39.90, 116.40)
GUANGZHOU = Pt("Guangzhou", 23.13, 113.26)

KM_PER_DEG = 2 * math.pi * 6371 / 360  # 111.195 km per degree of a great circle


@pytest.mark.parametrize(
    ("a", "b", "expected_km"),
    [
        ((0.0, 0.0), (0.0, 0.0), 0.0),
        ((0.0, 0.0), (0.0, 1.0), KM_PER_DEG),  # 1° along the equator = 111.195 km
        ((10.0, 50.0), (20.0, 50.0), 10 * KM_PER_DEG),  # 10° along a meridian = 1,111.95 km
        ((0.0, 0.0), (0.0, 180.0), math.pi * 6371),  # antipodes: π R = 20,015.1 km
        ((90.0, 0.0), (-90.0, 0.0), math.pi * 6371),  # pole to pole = 20,015.1 km
        # Beijing–Shanghai is commonly quoted as ≈ 1,067–1,070 km great circle.
        ((39.90, 116.40), (31.23, 121.47), 1067.1),
        # Beijing–Guangzhou is commonly quoted as ≈ 1,890 km great circle.
        ((39.90, 116.40), (23.13, 113.26), 1888.0),
    ],
)
def test_haversine_distances(
    a: tuple[float, float], b: tuple[float, float], expected_km: float
) -> None:
    assert haversine_km(*a, *b) == pytest.approx(expected_km, abs=0.1)


@pytest.mark.parametrize(
    ("src", "dst", "inflation", "expected_ms"),
    [
        # Shanghai→Zhongwei 1,646.2 km: 2 · 1646.2 · 1.5 / 200 + 2 = 24.69 + 2 = 26.69
        (SHANGHAI, ZHONGWEI, 1.5, 26.69),
        # Beijing→Shanghai 1,067.1 km: 2 · 1067.1 · 1.5 / 200 + 2 = 16.01 + 2 = 18.01
        (BEIJING, SHANGHAI, 1.5, 18.01),
        # Beijing→Guangzhou 1,888.0 km: 2 · 1888.0 · 1.5 / 200 + 2 = 28.32 + 2 = 30.32
        (BEIJING, GUANGZHOU, 1.5, 30.32),
        # Beijing→Guangzhou at inflation 1 (a straight fiber): 2 · 1888.0 / 200 + 2 = 20.88
        (BEIJING, GUANGZHOU, 1.0, 20.88),
        # Same place: no distance, only the 2 ms access overhead.
        (SHANGHAI, SHANGHAI, 1.5, 2.0),
    ],
)
def test_model_rtt_table(src: Pt, dst: Pt, inflation: float, expected_ms: float) -> None:
    est = rtt(src, dst, LatencyParams(route_inflation=inflation))
    assert est.rtt_ms == pytest.approx(expected_ms, abs=0.01)
    assert est.method is RttMethod.MODEL
    assert est.access_ms == 2.0


def test_model_derivation_reads_like_the_arithmetic() -> None:
    est = rtt(SHANGHAI, ZHONGWEI)
    assert est.derivation == (
        "Shanghai→Zhongwei 1,646 km × 1.5 route / 200 km/ms × 2 + 2.0 ms access = 26.7 ms"
    )
    # network part: 26.69 − 2.0 access = 24.69 ms
    assert est.network_rtt_ms == pytest.approx(24.69, abs=0.01)


def test_domain_values_are_places() -> None:
    shanghai = City("Shanghai", "上海", "Shanghai", Region.EAST, 31.23, 121.47, 1.0, "test")
    assert rtt(shanghai, ZHONGWEI).rtt_ms == pytest.approx(26.69, abs=0.01)


def test_measured_row_overrides_both_directions() -> None:
    row = MeasuredRtt("shanghai", "ZHONGWEI", 31.5, "probe campaign X")
    params = LatencyParams(measured=MeasuredMatrix.of([row]))
    there, back = rtt(SHANGHAI, ZHONGWEI, params), rtt(ZHONGWEI, SHANGHAI, params)
    for est in (there, back):
        assert est.rtt_ms == 31.5
        assert est.method is RttMethod.MEASURED
        assert est.source == "probe campaign X"
        assert est.access_ms == 0.0
        assert "probe campaign X" in est.derivation
    # the distance is still reported: 1,646 km
    assert there.distance_km == pytest.approx(1646.2, abs=0.1)
    # other pairs keep the model: Beijing→Shanghai 18.01 ms
    assert rtt(BEIJING, SHANGHAI, params).method is RttMethod.MODEL


def test_measured_matrix_rejects_contradictions_and_self_pairs() -> None:
    with pytest.raises(InvalidInput, match="given twice"):
        MeasuredMatrix.of([MeasuredRtt("A", "B", 10, "s"), MeasuredRtt("b", "a", 11, "s")])
    with pytest.raises(InvalidInput, match="itself"):
        MeasuredMatrix.of([MeasuredRtt("A", "a", 10, "s")])
    # the same figure twice (once per direction) is fine
    assert (
        len(MeasuredMatrix.of([MeasuredRtt("A", "B", 10, "s"), MeasuredRtt("B", "A", 10, "s")]))
        == 1
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"route_inflation": 0.9}, "≥ 1"),
        ({"route_inflation": float("nan")}, "≥ 1"),
        ({"fiber_km_per_ms": 0.0}, "> 0"),
        ({"access_rtt_ms": -1.0}, "≥ 0"),
    ],
)
def test_params_refuse_nonsense(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        LatencyParams(**kwargs)  # type: ignore[arg-type]


def test_matrix_matches_scalar_model() -> None:
    places = [SHANGHAI, ZHONGWEI, BEIJING, GUANGZHOU]
    m = rtt_matrix_for(places[:2], places)
    assert m.shape == (2, 4)
    for i, s in enumerate(places[:2]):
        for j, d in enumerate(places):
            assert m[i, j] == pytest.approx(rtt(s, d).rtt_ms, rel=1e-12)


def test_matrix_overrides_by_index() -> None:
    lat, lon = [31.23, 39.90], [121.47, 116.40]
    plain = rtt_matrix_ms(lat, lon, lat, lon)
    patched = rtt_matrix_ms(lat, lon, lat, lon, overrides=[(0, 1, 99.0)])
    assert patched[0, 1] == 99.0
    # only the overridden cell changes: Beijing→Shanghai keeps the model's 18.01 ms
    assert patched[1, 0] == pytest.approx(18.01, abs=0.01)
    assert np.array_equal(np.delete(patched.ravel(), 1), np.delete(plain.ravel(), 1))


def test_matrix_applies_measured_rows_by_name() -> None:
    params = LatencyParams(
        measured=MeasuredMatrix.of([MeasuredRtt("Beijing", "Shanghai", 25, "s")])
    )
    cities = [SHANGHAI, GUANGZHOU, BEIJING]
    sites = [ZHONGWEI, SHANGHAI, BEIJING]
    m = rtt_matrix_for(cities, sites, params)
    assert m[0, 2] == 25.0  # Shanghai→Beijing, measured
    assert m[2, 1] == 25.0  # Beijing→Shanghai, same row the other way
    assert m[0, 1] == 2.0  # Shanghai→Shanghai: 0 km, access only
    assert sorted(measured_overrides(["Shanghai", "Beijing"], ["beijing"], params.measured)) == [
        (0, 0, 25.0)
    ]


@pytest.mark.parametrize(
    ("network_ms", "circle"),
    [(0.4, 1.0), (1.0, 1.0), (1.01, 5.0), (5.0, 5.0), (19.9, 20.0), (20.5, None)],
)
def test_latency_circles(network_ms: float, circle: float | None) -> None:
    assert latency_circle_ms(network_ms) == circle


def test_model_rtt_of_distance() -> None:
    # 1,000 km at 1.5: 2 · 1000 · 1.5 / 200 + 2 = 15 + 2 = 17 ms
    assert model_rtt_ms(1000.0, LatencyParams()) == pytest.approx(17.0)
    # 1,000 km, inflation 2, no access: 2 · 1000 · 2 / 200 = 20 ms
    assert model_rtt_ms(1000.0, LatencyParams(route_inflation=2.0, access_rtt_ms=0)) == (
        pytest.approx(20.0)
    )
