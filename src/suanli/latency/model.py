"""City↔site round-trip time (RTT) from geography, with measured overrides.

The model, for two places (anything with ``name``, ``lat``, ``lon``)::

    distance_km = haversine great-circle distance, R = 6371 km
    rtt_ms      = 2 · distance_km · inflation / fiber_km_per_ms + access_rtt_ms

- ``fiber_km_per_ms = 200``: light in glass travels at ≈ c / 1.47, i.e. ≈ 4.9–5 µs per km
  one way (DESIGN.md, "Network"), so ≈ 200 km per millisecond.
- ``inflation = 1.5``: fiber never runs along the great circle. The MIIT target for the
  national computing-power network is that hub clusters are connected at ≤ 1.5× the
  theoretical latency, so 1.5 is the route factor the network is built towards.
- ``access_rtt_ms = 2.0``: an ASSUMPTION, not a measured figure — the metro access and
  last-mile part of a user's round trip (access network, aggregation, data-center edge),
  which does not shrink with distance. It is what keeps a same-city RTT above zero.

A measured matrix (rows ``from, to, rtt_ms, source``) overrides the model for a pair of
place names in both directions; the estimate then says "measured" and carries the source.

Sanity check (tests/latency): the model's mean RTT over pairs of national hub clusters
lands inside the range CAICT measured between hub cities in Q1 2024 — optical layer
average 9.7 ms up to public internet maximum 28.7 ms (the report does not say whether
those are one-way or round-trip).

The national network's latency circles (1 ms within a city, 5 ms within a region, 20 ms
between hubs) describe the network between compute facilities, so :func:`latency_circle_ms`
is meant to be applied to the network part of an RTT (``rtt_ms − access_ms``).

Everything here is pure: no I/O, no clock. :func:`rtt_matrix_ms` is the vectorized form
for the clearing engine's hot path (cities × sites).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

import numpy as np
import numpy.typing as npt

from suanli.errors import InvalidInput

__all__ = [
    "ACCESS_RTT_MS",
    "DEFAULT_ROUTE_INFLATION",
    "EARTH_RADIUS_KM",
    "FIBER_KM_PER_MS",
    "LATENCY_CIRCLES_MS",
    "LatencyParams",
    "MeasuredMatrix",
    "MeasuredRtt",
    "Place",
    "RttEstimate",
    "RttMethod",
    "haversine_km",
    "latency_circle_ms",
    "measured_overrides",
    "model_rtt_ms",
    "rtt",
    "rtt_matrix_for",
    "rtt_matrix_ms",
]

EARTH_RADIUS_KM = 6371.0
FIBER_KM_PER_MS = 200.0
"""One-way propagation in fiber: ≈ 5 µs/km — light at c / n with the group index of
standard single-mode fiber, n ≈ 1.47 (ITU-T G.652 fiber; Corning SMF-28 datasheet), is
≈ 204 km/ms, i.e. 4.9 µs/km."""
DEFAULT_ROUTE_INFLATION = 1.5
"""MIIT target: hub clusters connected at ≤ 1.5× theoretical latency."""
ACCESS_RTT_MS = 2.0
"""Assumption: metro access / last mile share of an RTT, independent of distance."""
LATENCY_CIRCLES_MS: tuple[float, ...] = (1.0, 5.0, 20.0)
"""National network latency circles: within a city, within a region, between hubs."""

FloatArray = npt.NDArray[np.float64]


class Place(Protocol):
    """Anything with a name and coordinates: a City, Site, Hub or Cluster."""

    @property
    def name(self) -> str: ...

    @property
    def lat(self) -> float: ...

    @property
    def lon(self) -> float: ...


class RttMethod(StrEnum):
    MODEL = "model"
    MEASURED = "measured"


@dataclass(frozen=True, slots=True)
class MeasuredRtt:
    """One measured round trip between two named places, with where it comes from.

    ``source`` is the citation (report, campaign, date); ``origin`` is where the row was
    read (``file:line``), for error messages.
    """

    from_name: str
    to_name: str
    rtt_ms: float
    source: str
    origin: str = ""


def _at(row: MeasuredRtt) -> str:
    return f" ({row.origin})" if row.origin else ""


def _pair_key(a: str, b: str) -> frozenset[str]:
    return frozenset((a.strip().casefold(), b.strip().casefold()))


@dataclass(frozen=True, slots=True)
class MeasuredMatrix:
    """Measured RTTs keyed by unordered, case-insensitive pairs of place names."""

    rows: Mapping[frozenset[str], MeasuredRtt] = field(default_factory=dict)

    @classmethod
    def of(cls, rows: Iterable[MeasuredRtt]) -> MeasuredMatrix:
        """Index ``rows``; a pair given twice (in either direction) must agree."""
        index: dict[frozenset[str], MeasuredRtt] = {}
        for row in rows:
            key = _pair_key(row.from_name, row.to_name)
            if len(key) != 2:
                raise InvalidInput(f"measured RTT from {row.from_name!r} to itself")
            prior = index.get(key)
            if prior is not None and prior.rtt_ms != row.rtt_ms:
                raise InvalidInput(
                    f"measured RTT {row.from_name}↔{row.to_name} given twice: "
                    f"{prior.rtt_ms} ms{_at(prior)} and {row.rtt_ms} ms{_at(row)}"
                )
            index[key] = row
        return cls(rows=index)

    def lookup(self, a: str, b: str) -> MeasuredRtt | None:
        """The measured row for ``a``↔``b`` in either direction, or None."""
        return self.rows.get(_pair_key(a, b))

    def __len__(self) -> int:
        return len(self.rows)


@dataclass(frozen=True, slots=True)
class LatencyParams:
    """Model knobs. Construction refuses values that make no physical sense."""

    route_inflation: float = DEFAULT_ROUTE_INFLATION
    fiber_km_per_ms: float = FIBER_KM_PER_MS
    access_rtt_ms: float = ACCESS_RTT_MS
    measured: MeasuredMatrix = field(default_factory=MeasuredMatrix)

    def __post_init__(self) -> None:
        # A fiber route is never shorter than the great circle, so inflation < 1 is an error.
        if not (math.isfinite(self.route_inflation) and self.route_inflation >= 1.0):
            raise InvalidInput(
                f"route inflation must be a number ≥ 1 (fiber is never shorter than the "
                f"great circle); got {self.route_inflation}"
            )
        if not (math.isfinite(self.fiber_km_per_ms) and self.fiber_km_per_ms > 0):
            raise InvalidInput(f"fiber speed must be > 0 km/ms; got {self.fiber_km_per_ms}")
        if not (math.isfinite(self.access_rtt_ms) and self.access_rtt_ms >= 0):
            raise InvalidInput(f"access RTT must be ≥ 0 ms; got {self.access_rtt_ms}")


@dataclass(frozen=True, slots=True)
class RttEstimate:
    """An RTT and how it was obtained.

    ``access_ms`` is the distance-independent share included in ``rtt_ms`` (0 for a
    measured row, whose split is unknown). ``source`` is the measured row's source.
    """

    from_name: str
    to_name: str
    rtt_ms: float
    distance_km: float
    method: RttMethod
    access_ms: float
    derivation: str
    source: str | None = None

    @property
    def network_rtt_ms(self) -> float:
        """The part of the RTT spent in the wide-area network."""
        return self.rtt_ms - self.access_ms


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in km between two points given in degrees."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi = math.radians(lat2 - lat1)
    dlam = math.radians(lon2 - lon1)
    h = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlam / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(min(1.0, h)))


def model_rtt_ms(distance_km: float, params: LatencyParams) -> float:
    """Modelled RTT for a great-circle distance; non-decreasing in the distance."""
    propagation_ms = 2 * distance_km * params.route_inflation / params.fiber_km_per_ms
    return propagation_ms + params.access_rtt_ms


def rtt(src: Place, dst: Place, params: LatencyParams | None = None) -> RttEstimate:
    """RTT between two places: the measured row if there is one, else the model."""
    p = params if params is not None else LatencyParams()
    distance_km = haversine_km(src.lat, src.lon, dst.lat, dst.lon)
    arrow = f"{src.name}→{dst.name}"
    row = p.measured.lookup(src.name, dst.name)
    if row is not None:
        return RttEstimate(
            from_name=src.name,
            to_name=dst.name,
            rtt_ms=row.rtt_ms,
            distance_km=distance_km,
            method=RttMethod.MEASURED,
            access_ms=0.0,
            derivation=(
                f"{arrow} measured {row.rtt_ms:.1f} ms (source: {row.source}); "
                f"great circle {distance_km:,.0f} km"
            ),
            source=row.source,
        )
    rtt_ms = model_rtt_ms(distance_km, p)
    return RttEstimate(
        from_name=src.name,
        to_name=dst.name,
        rtt_ms=rtt_ms,
        distance_km=distance_km,
        method=RttMethod.MODEL,
        access_ms=p.access_rtt_ms,
        derivation=(
            f"{arrow} {distance_km:,.0f} km × {p.route_inflation:g} route / "
            f"{p.fiber_km_per_ms:g} km/ms × 2 + {p.access_rtt_ms:.1f} ms access = {rtt_ms:.1f} ms"
        ),
    )


def rtt_matrix_ms(
    src_lat: npt.ArrayLike,
    src_lon: npt.ArrayLike,
    dst_lat: npt.ArrayLike,
    dst_lon: npt.ArrayLike,
    params: LatencyParams | None = None,
    overrides: Iterable[tuple[int, int, float]] = (),
) -> FloatArray:
    """Modelled RTT in ms, shape (len(src), len(dst)); ``out[i, j]`` is src i → dst j.

    ``overrides`` are ``(i, j, rtt_ms)`` triples (see :func:`measured_overrides`) written
    over the model after it is computed. Agrees with :func:`rtt` to float rounding.
    """
    p = params if params is not None else LatencyParams()
    phi1 = np.radians(np.asarray(src_lat, dtype=np.float64))[:, None]
    lam1 = np.asarray(src_lon, dtype=np.float64)[:, None]
    phi2 = np.radians(np.asarray(dst_lat, dtype=np.float64))[None, :]
    lam2 = np.asarray(dst_lon, dtype=np.float64)[None, :]
    h = (
        np.sin((phi2 - phi1) / 2) ** 2
        + np.cos(phi1) * np.cos(phi2) * np.sin(np.radians(lam2 - lam1) / 2) ** 2
    )
    distance_km = 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.minimum(h, 1.0)))
    out: FloatArray = 2 * distance_km * (p.route_inflation / p.fiber_km_per_ms) + p.access_rtt_ms
    for i, j, value in overrides:
        out[i, j] = value
    return out


def measured_overrides(
    src_names: Sequence[str], dst_names: Sequence[str], measured: MeasuredMatrix
) -> list[tuple[int, int, float]]:
    """``(i, j, rtt_ms)`` for every src/dst name pair the matrix has a row for.

    Resolves names to indices once, off the hot path: cost is linear in the number of
    names plus the number of measured rows, not their product.
    """
    if len(measured) == 0:
        return []
    src_at = _indices_by_name(src_names)
    dst_at = _indices_by_name(dst_names)
    out: list[tuple[int, int, float]] = []
    for key, row in measured.rows.items():
        a, b = tuple(key)
        for x, y in ((a, b), (b, a)):
            out.extend((i, j, row.rtt_ms) for i in src_at.get(x, ()) for j in dst_at.get(y, ()))
    return out


def _indices_by_name(names: Sequence[str]) -> dict[str, list[int]]:
    index: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        index.setdefault(name.strip().casefold(), []).append(i)
    return index


def rtt_matrix_for(
    srcs: Sequence[Place], dsts: Sequence[Place], params: LatencyParams | None = None
) -> FloatArray:
    """:func:`rtt_matrix_ms` over places, with the params' measured rows applied."""
    p = params if params is not None else LatencyParams()
    return rtt_matrix_ms(
        [s.lat for s in srcs],
        [s.lon for s in srcs],
        [d.lat for d in dsts],
        [d.lon for d in dsts],
        p,
        measured_overrides([s.name for s in srcs], [d.name for d in dsts], p.measured),
    )


def latency_circle_ms(network_rtt_ms: float) -> float | None:
    """The smallest national latency circle (1, 5 or 20 ms) holding this RTT, or None."""
    for circle_ms in LATENCY_CIRCLES_MS:
        if network_rtt_ms <= circle_ms:
            return circle_ms
    return None
