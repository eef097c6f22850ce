"""Latency model: city↔site round-trip time from geography, with measured overrides.

The model and its assumptions are written down in :mod:`suanli.latency.model`; the
measured-RTT CSV loader (the only I/O here) is :mod:`suanli.latency._load`.
"""

from __future__ import annotations

from suanli.latency._load import MEASURED_COLUMNS, load_measured, parse_measured
from suanli.latency.model import (
    ACCESS_RTT_MS,
    DEFAULT_ROUTE_INFLATION,
    EARTH_RADIUS_KM,
    FIBER_KM_PER_MS,
    LATENCY_CIRCLES_MS,
    LatencyParams,
    MeasuredMatrix,
    MeasuredRtt,
    Place,
    RttEstimate,
    RttMethod,
    haversine_km,
    latency_circle_ms,
    measured_overrides,
    model_rtt_ms,
    rtt,
    rtt_matrix_for,
    rtt_matrix_ms,
)

__all__ = [
    "ACCESS_RTT_MS",
    "DEFAULT_ROUTE_INFLATION",
    "EARTH_RADIUS_KM",
    "FIBER_KM_PER_MS",
    "LATENCY_CIRCLES_MS",
    "MEASURED_COLUMNS",
    "LatencyParams",
    "MeasuredMatrix",
    "MeasuredRtt",
    "Place",
    "RttEstimate",
    "RttMethod",
    "haversine_km",
    "latency_circle_ms",
    "load_measured",
    "measured_overrides",
    "model_rtt_ms",
    "parse_measured",
    "rtt",
    "rtt_matrix_for",
    "rtt_matrix_ms",
]
