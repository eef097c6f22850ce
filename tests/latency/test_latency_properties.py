"""Properties the model must keep for any coordinates: symmetry, monotone in distance,
measured rows win."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from suanli.latency import (
    LatencyParams,
    MeasuredMatrix,
    MeasuredRtt,
    RttMethod,
    haversine_km,
    model_rtt_ms,
    rtt,
    rtt_matrix_ms,
)


@dataclass(frozen=True)
class Pt:
    name: str
    lat: float
    lon: float


lats = st.floats(min_value=-90, max_value=90, allow_nan=False)
lons = st.floats(min_value=-180, max_value=180, allow_nan=False)
inflations = st.floats(min_value=1.0, max_value=4.0, allow_nan=False)
accesses = st.floats(min_value=0.0, max_value=10.0, allow_nan=False)
# Float rounding in sin/asin may wobble by far less than a nanosecond; a real violation
# of "farther never faster" would be at least micro-seconds.
EPS_MS = 1e-9


@given(lats, lons, lats, lons, inflations, accesses)
def test_symmetric(
    lat1: float, lon1: float, lat2: float, lon2: float, inflation: float, access: float
) -> None:
    params = LatencyParams(route_inflation=inflation, access_rtt_ms=access)
    a, b = Pt("a", lat1, lon1), Pt("b", lat2, lon2)
    assert abs(rtt(a, b, params).rtt_ms - rtt(b, a, params).rtt_ms) <= EPS_MS


@given(
    st.floats(min_value=0, max_value=20_100),
    st.floats(min_value=0, max_value=20_100),
    inflations,
    accesses,
)
def test_farther_never_lowers_rtt_in_distance(
    d1: float, d2: float, inflation: float, access: float
) -> None:
    params = LatencyParams(route_inflation=inflation, access_rtt_ms=access)
    near, far = sorted((d1, d2))
    assert model_rtt_ms(near, params) <= model_rtt_ms(far, params)


@given(
    st.floats(min_value=-80, max_value=0),
    lons,
    st.floats(min_value=0, max_value=80),
    st.floats(min_value=0, max_value=80),
)
def test_farther_along_a_meridian_never_lowers_rtt(
    lat0: float, lon: float, step1: float, step2: float
) -> None:
    # Moving the destination further north from a southern-hemisphere source, at most
    # 160° away, strictly increases the great-circle distance.
    near, far = sorted((step1, step2))
    src = Pt("src", lat0, lon)
    r_near = rtt(src, Pt("near", lat0 + near, lon)).rtt_ms
    r_far = rtt(src, Pt("far", lat0 + far, lon)).rtt_ms
    assert r_near <= r_far + EPS_MS


@given(lats, lons, lats, lons, lats, lons)
def test_farther_by_distance_never_faster(
    lat0: float, lon0: float, lat1: float, lon1: float, lat2: float, lon2: float
) -> None:
    # Any two destinations from one source: the one further away is never faster.
    src, p1, p2 = Pt("s", lat0, lon0), Pt("p1", lat1, lon1), Pt("p2", lat2, lon2)
    e1, e2 = rtt(src, p1), rtt(src, p2)
    if e1.distance_km <= e2.distance_km:
        assert e1.rtt_ms <= e2.rtt_ms
    else:
        assert e2.rtt_ms <= e1.rtt_ms


@given(lats, lons, lats, lons, st.floats(min_value=0.01, max_value=500))
def test_measured_overrides_take_precedence(
    lat1: float, lon1: float, lat2: float, lon2: float, measured_ms: float
) -> None:
    a, b = Pt("Alpha", lat1, lon1), Pt("Beta", lat2, lon2)
    params = LatencyParams(
        measured=MeasuredMatrix.of([MeasuredRtt("alpha", "beta", measured_ms, "test")])
    )
    for est in (rtt(a, b, params), rtt(b, a, params)):
        assert est.method is RttMethod.MEASURED
        assert est.rtt_ms == measured_ms
    assert rtt(a, b).method is RttMethod.MODEL


@given(
    st.lists(st.tuples(lats, lons), min_size=1, max_size=5),
    st.lists(st.tuples(lats, lons), min_size=1, max_size=5),
)
def test_matrix_agrees_with_scalar(
    srcs: list[tuple[float, float]], dsts: list[tuple[float, float]]
) -> None:
    m = rtt_matrix_ms(
        [s[0] for s in srcs], [s[1] for s in srcs], [d[0] for d in dsts], [d[1] for d in dsts]
    )
    expected = np.array(
        [[model_rtt_ms(haversine_km(*s, *d), LatencyParams()) for d in dsts] for s in srcs]
    )
    # near-antipodal pairs make asin ill-conditioned; 1e-6 ms is still far below anything
    # a user would notice
    np.testing.assert_allclose(m, expected, rtol=1e-9, atol=1e-6)
