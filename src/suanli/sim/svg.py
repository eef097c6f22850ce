"""Charts as inline SVG strings: lines over time, a lon/lat map, signed bars.

Written by hand so the report works offline with no JavaScript or CDN. Every text is
escaped; every number is formatted with a fixed precision so the output is reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

__all__ = [
    "PALETTE",
    "Bar",
    "MapPoint",
    "Series",
    "bar_chart",
    "line_chart",
    "map_chart",
    "utilization_color",
]

PALETTE = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#ff7f0e",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#7f7f7f",
    "#bcbd22",
)
_FONT = 'font-family="system-ui, sans-serif" font-size="11"'


@dataclass(frozen=True)
class Series:
    name: str
    xs: Sequence[float]
    ys: Sequence[float]  # NaN breaks the line


@dataclass(frozen=True)
class MapPoint:
    lon: float
    lat: float
    value: float  # 0..1, sets the colour
    radius: float
    label: str


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    note: str = ""


def _f(x: float) -> str:
    return f"{x:.1f}"


def _nice_max(x: float) -> float:
    if x <= 0 or not math.isfinite(x):
        return 1.0
    mag = 10.0 ** math.floor(math.log10(x))
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        if x <= step * mag:
            return step * mag
    return 10.0 * mag


def _nice_step(raw: float) -> float:
    if raw <= 0 or not math.isfinite(raw):
        return 1.0
    mag = 10.0 ** math.floor(math.log10(raw))
    return next(m * mag for m in (1.0, 2.0, 2.5, 5.0, 10.0) if raw <= m * mag)


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round-numbered ticks covering [lo, hi], about ``n`` intervals, zero included."""
    return _ticks_by(lo, hi, _nice_step((hi - lo) / n))


_HOUR_STEPS = (0.25, 0.5, 1.0, 2.0, 3.0, 6.0, 12.0, 24.0, 48.0, 168.0, 336.0, 720.0)


def _ticks_by(lo: float, hi: float, step: float) -> list[float]:
    first = math.ceil(lo / step - 1e-9) * step
    return [first + k * step for k in range(int((hi - first) / step + 1e-9) + 1)]


def _label(v: float) -> str:
    if abs(v) >= 1e6:
        return f"{v / 1e6:.3g}M"
    if abs(v) >= 1e3:
        return f"{v / 1e3:.3g}k"
    return f"{v:.3g}"


def _legend(names: Sequence[str], x: float, y: float) -> str:
    parts = []
    for i, name in enumerate(names):
        yy = y + 14 * i
        color = PALETTE[i % len(PALETTE)]
        parts.append(
            f'<rect x="{_f(x)}" y="{_f(yy - 8)}" width="10" height="10" fill="{color}"/>'
            f'<text x="{_f(x + 14)}" y="{_f(yy + 1)}" {_FONT}>{escape(name)}</text>'
        )
    return "".join(parts)


def line_chart(
    series: Sequence[Series],
    *,
    title: str,
    x_label: str,
    y_label: str,
    y_max: float | None = None,
    width: int = 760,
    height: int = 280,
) -> str:
    """Lines over a shared x axis; a legend on the right names each series."""
    # the legend gets the room its longest name needs; the plot keeps its width
    right = 36 + 7 * max((len(s.name) for s in series), default=10)
    left, top, bottom = 56, 28, 40
    width += max(0, right - 170)
    pw, ph = width - left - right, height - top - bottom
    xs_all = [x for s in series for x in s.xs]
    ys_all = [y for s in series for y in s.ys if math.isfinite(y)]
    x0, x1 = (min(xs_all), max(xs_all)) if xs_all else (0.0, 1.0)
    x1 = x1 if x1 > x0 else x0 + 1.0
    top_y = y_max if y_max is not None else _nice_max(max(ys_all, default=1.0))

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * pw

    def py(y: float) -> float:
        return top + ph - min(max(y, 0.0), top_y) / top_y * ph

    out = [_open(width, height, title)]
    for t in _ticks(0.0, top_y):
        out.append(
            f'<line x1="{left}" y1="{_f(py(t))}" x2="{left + pw}" y2="{_f(py(t))}" '
            f'stroke="#ddd"/><text x="{left - 4}" y="{_f(py(t) + 4)}" text-anchor="end" '
            f"{_FONT}>{_label(t)}</text>"
        )
    step = next((h for h in _HOUR_STEPS if (x1 - x0) / h <= 8), _nice_step((x1 - x0) / 8))
    for t in _ticks_by(x0, x1, step):
        out.append(
            f'<text x="{_f(px(t))}" y="{top + ph + 14}" text-anchor="middle" {_FONT}>'
            f"{_label(t)}</text>"
        )
    out.append(
        f'<text x="{left + pw / 2:.1f}" y="{height - 6}" text-anchor="middle" {_FONT}>'
        f"{escape(x_label)}</text>"
        f'<text x="12" y="{top + ph / 2:.1f}" transform="rotate(-90 12 {top + ph / 2:.1f})" '
        f'text-anchor="middle" {_FONT}>{escape(y_label)}</text>'
    )
    for i, s in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        for run in _runs(s):
            pts = " ".join(f"{_f(px(x))},{_f(py(y))}" for x, y in run)
            out.append(
                f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{pts}">'
                f"<title>{escape(s.name)}</title></polyline>"
            )
    out.append(_legend([s.name for s in series], left + pw + 12, top + 8))
    out.append("</svg>")
    return "".join(out)


def _runs(s: Series) -> list[list[tuple[float, float]]]:
    runs: list[list[tuple[float, float]]] = [[]]
    for x, y in zip(s.xs, s.ys, strict=True):
        if math.isfinite(y):
            runs[-1].append((x, y))
        elif runs[-1]:
            runs.append([])
    return [r for r in runs if r]


def utilization_color(value: float) -> str:
    """Red (idle) through amber to green (busy) for a share in [0, 1]."""
    v = min(max(value, 0.0), 1.0)
    if v < 0.5:
        r, g = 215, int(48 + (190 - 48) * v / 0.5)
    else:
        r, g = int(215 - (215 - 26) * (v - 0.5) / 0.5), int(190 - (190 - 150) * (v - 0.5) / 0.5)
    return f"#{r:02x}{g:02x}{40:02x}"


def map_chart(
    points: Sequence[MapPoint],
    *,
    title: str,
    labels: Sequence[tuple[float, float, str]] = (),
    width: int = 520,
    height: int = 420,
) -> str:
    """Points on an equirectangular lon/lat frame, coloured by value, with a scale;
    ``labels`` are (lon, lat, text) names drawn in grey (e.g. the hubs)."""
    left, right, top, bottom = 40, 20, 28, 56
    pw, ph = width - left - right, height - top - bottom
    lons = [p.lon for p in points] or [100.0]
    lats = [p.lat for p in points] or [30.0]
    lo0, lo1 = math.floor(min(lons)) - 1, math.ceil(max(lons)) + 1
    la0, la1 = math.floor(min(lats)) - 1, math.ceil(max(lats)) + 1

    def px(lon: float) -> float:
        return left + (lon - lo0) / (lo1 - lo0) * pw

    def py(lat: float) -> float:
        return top + ph - (lat - la0) / (la1 - la0) * ph

    out = [_open(width, height, title)]
    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#f4f6f8"/>')
    for lon in range(int(lo0), int(lo1) + 1, 5):
        out.append(
            f'<line x1="{_f(px(lon))}" y1="{top}" x2="{_f(px(lon))}" y2="{top + ph}" '
            f'stroke="#dde"/><text x="{_f(px(lon))}" y="{top + ph + 12}" '
            f'text-anchor="middle" {_FONT}>{lon}°E</text>'
        )
    for lat in range(int(la0), int(la1) + 1, 5):
        out.append(
            f'<line x1="{left}" y1="{_f(py(lat))}" x2="{left + pw}" y2="{_f(py(lat))}" '
            f'stroke="#dde"/><text x="{left - 3}" y="{_f(py(lat) + 4)}" '
            f'text-anchor="end" {_FONT}>{lat}°N</text>'
        )
    for p in sorted(points, key=lambda q: -q.radius):
        out.append(
            f'<circle cx="{_f(px(p.lon))}" cy="{_f(py(p.lat))}" r="{_f(p.radius)}" '
            f'fill="{utilization_color(p.value)}" fill-opacity="0.85" stroke="#333" '
            f'stroke-width="0.5"><title>{escape(p.label)}</title></circle>'
        )
    for lab_lon, lab_lat, text in labels:
        # names on the eastern half hang to the left so they stay inside the frame
        east = px(lab_lon) > left + pw / 2
        x = px(lab_lon) + (-7 if east else 7)
        anchor = "end" if east else "start"
        out.append(
            f'<text x="{_f(x)}" y="{_f(py(lab_lat) - 6)}" fill="#555" text-anchor="{anchor}" '
            f"{_FONT}>{escape(text)}</text>"
        )
    sy = height - 22
    for i in range(11):
        out.append(
            f'<rect x="{left + i * 20}" y="{sy}" width="20" height="10" '
            f'fill="{utilization_color(i / 10)}"/>'
        )
    out.append(
        f'<text x="{left}" y="{sy + 22}" {_FONT}>0%</text>'
        f'<text x="{left + 220}" y="{sy + 22}" text-anchor="end" {_FONT}>100% busy</text>'
    )
    out.append("</svg>")
    return "".join(out)


def bar_chart(
    bars: Sequence[Bar],
    *,
    title: str,
    y_label: str,
    width: int = 760,
    height: int = 300,
) -> str:
    """Vertical bars around zero: green above, red below (e.g. profit per site)."""
    left, right, top, bottom = 56, 16, 28, 30
    pw, ph = width - left - right, height - top - bottom
    vals = [b.value for b in bars] or [0.0]
    hi = _nice_max(max(max(vals), 0.0)) if max(vals) > 0 else 0.0
    lo = -_nice_max(-min(min(vals), 0.0)) if min(vals) < 0 else 0.0
    span = (hi - lo) or 1.0

    def py(v: float) -> float:
        return top + (hi - v) / span * ph

    out = [_open(width, height, title)]
    for t in _ticks(lo, hi, 4):
        out.append(
            f'<line x1="{left}" y1="{_f(py(t))}" x2="{left + pw}" y2="{_f(py(t))}" '
            f'stroke="#ddd"/><text x="{left - 4}" y="{_f(py(t) + 4)}" text-anchor="end" '
            f"{_FONT}>{_label(t)}</text>"
        )
    n = max(len(bars), 1)
    bw = pw / n
    for i, b in enumerate(bars):
        y0, y1 = py(max(b.value, 0.0)), py(min(b.value, 0.0))
        color = "#2ca02c" if b.value >= 0 else "#d62728"
        tip = f"{b.label}: {b.value:,.0f}" + (f" — {b.note}" if b.note else "")
        out.append(
            f'<rect x="{_f(left + i * bw)}" y="{_f(y0)}" width="{_f(max(bw - 1, 0.5))}" '
            f'height="{_f(max(y1 - y0, 0.5))}" fill="{color}"><title>{escape(tip)}</title></rect>'
        )
    out.append(
        f'<line x1="{left}" y1="{_f(py(0))}" x2="{left + pw}" y2="{_f(py(0))}" stroke="#333"/>'
        f'<text x="12" y="{top + ph / 2:.1f}" transform="rotate(-90 12 {top + ph / 2:.1f})" '
        f'text-anchor="middle" {_FONT}>{escape(y_label)}</text>'
        f'<text x="{left + pw / 2:.1f}" y="{height - 8}" text-anchor="middle" {_FONT}>'
        "sites, worst to best (hover for names)</text></svg>"
    )
    return "".join(out)


def _open(width: int, height: int, title: str) -> str:
    return (
        f'<svg width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">'
        f'<text x="{width / 2:.1f}" y="16" text-anchor="middle" font-family="system-ui, '
        f'sans-serif" font-size="13" font-weight="bold">{escape(title)}</text>'
    )
