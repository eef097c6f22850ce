"""``suanli latency``: RTT from a demand city to a site, cluster or hub, and its derivation.

``--to`` names a site of the china-2025 fleet (id or name), a national cluster or a hub;
``--all-hubs`` lists every hub by RTT with the national latency circle it falls in. Names
in a ``--measured`` file are resolved the same way (a city, site, cluster or hub, by any
alias the catalogue knows), so a row written "Shanghai,Tianfu" applies to the cluster
whose canonical name is "Tianfu (Chengdu)".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any

import typer

from suanli.catalog import Catalog, city, cluster, hub, load_catalog, normalize_name
from suanli.catalog.fleet import load_fleet
from suanli.cli._output import print_json, print_table
from suanli.domain import Fleet
from suanli.errors import InvalidInput, UnknownName
from suanli.latency import (
    LatencyParams,
    MeasuredMatrix,
    Place,
    RttEstimate,
    RttMethod,
    latency_circle_ms,
    load_measured,
    rtt,
)

__all__ = ["FLEET", "Target", "register", "resolve_measured", "resolve_target"]

FLEET = "china-2025"

# The national network's latency circles, by the scope each one is promised for.
CIRCLE_LABELS = {1.0: "≤1 ms city", 5.0: "≤5 ms region", 20.0: "≤20 ms hubs"}


@dataclass(frozen=True, slots=True)
class Target:
    """A resolved ``--to``: what kind of place it is, its id, and the place itself."""

    kind: str  # "site" | "cluster" | "hub"
    id: str
    place: Place


def resolve_target(cat: Catalog, name: str, fleet: Callable[[], Fleet]) -> Target:
    """The site (id or name), cluster or hub called ``name``, tried in that order.

    Raises UnknownName listing the nearest site ids, cluster and hub names.
    """
    norm = normalize_name(name)
    sites = fleet().sites
    for site in sites.values():
        if norm in (normalize_name(site.id), normalize_name(site.name)):
            return Target("site", site.id, site)
    try:
        c = cluster(cat, name)
        return Target("cluster", c.id, c)
    except UnknownName:
        pass
    try:
        h = hub(cat, name)
        return Target("hub", h.id, h)
    except UnknownName:
        pass
    valid = [
        *(c.name for c in cat.clusters.values()),
        *cat.clusters,
        *(h.name for h in cat.hubs.values()),
        *cat.hubs,
        *sites,
    ]
    raise UnknownName("site, cluster or hub", name, dict.fromkeys(valid))


def resolve_measured(
    cat: Catalog, measured: MeasuredMatrix, fleet: Callable[[], Fleet]
) -> MeasuredMatrix:
    """``measured`` with every place name replaced by its canonical name.

    A name that is no city, site, cluster or hub is an error naming the file and line.
    """

    def canonical(name: str) -> str:
        try:
            return city(cat, name).name
        except UnknownName:
            pass
        try:
            return resolve_target(cat, name, fleet).place.name
        except UnknownName as exc:
            raise UnknownName(
                "city, site, cluster or hub", name, [*cat.cities, *exc.valid]
            ) from None

    rows = []
    for row in measured.rows.values():
        try:
            rows.append(
                replace(row, from_name=canonical(row.from_name), to_name=canonical(row.to_name))
            )
        except UnknownName as exc:
            raise InvalidInput(f"{row.origin or 'measured RTT'}: {exc}") from None
    return MeasuredMatrix.of(rows)


def _circle_label(est: RttEstimate) -> str:
    circle = latency_circle_ms(est.network_rtt_ms)
    return CIRCLE_LABELS.get(circle, f"≤{circle:g} ms") if circle is not None else ">20 ms"


def _as_json(est: RttEstimate, params: LatencyParams) -> dict[str, Any]:
    return {
        "from": est.from_name,
        "to": est.to_name,
        "rtt_ms": round(est.rtt_ms, 3),
        "distance_km": round(est.distance_km, 1),
        "method": est.method.value,
        "route_inflation": params.route_inflation,
        "fiber_km_per_ms": params.fiber_km_per_ms,
        "access_ms": est.access_ms,
        "network_rtt_ms": round(est.network_rtt_ms, 3),
        "latency_circle_ms": latency_circle_ms(est.network_rtt_ms),
        "source": est.source,
        "derivation": est.derivation,
    }


def latency(
    from_city: Annotated[
        str, typer.Option("--from", help="Demand city (English or Chinese name).")
    ],
    to: Annotated[
        str | None,
        typer.Option("--to", help="Site id/name of the china-2025 fleet, a cluster or a hub."),
    ] = None,
    all_hubs: Annotated[
        bool, typer.Option("--all-hubs", help="RTT to every national hub, nearest first.")
    ] = False,
    inflation: Annotated[
        float, typer.Option("--inflation", help="Route inflation over the great circle (≥ 1).")
    ] = LatencyParams().route_inflation,
    measured_file: Annotated[
        Path | None,
        typer.Option("--measured", help="CSV of measured RTTs: from,to,rtt_ms,source."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Round-trip time from a city to a site, cluster or hub, and how it was derived."""
    if (to is None) == (not all_hubs):
        raise InvalidInput("give exactly one of --to NAME or --all-hubs")
    cat = load_catalog()
    src = city(cat, from_city)

    def fleet() -> Fleet:
        return load_fleet(FLEET)

    measured = resolve_measured(cat, load_measured(measured_file), fleet)
    params = LatencyParams(route_inflation=inflation, measured=measured)

    if to is not None:
        target = resolve_target(cat, to, fleet)
        est = rtt(src, target.place, params)
        if as_json:
            print_json({**_as_json(est, params), "to_kind": target.kind, "to_id": target.id})
            return
        typer.echo(f"{est.from_name} → {est.to_name} ({target.kind} {target.id})")
        typer.echo(f"RTT: {est.rtt_ms:.1f} ms ({est.method.value})")
        typer.echo(f"how: {est.derivation}")
        split = (
            f"network part {est.network_rtt_ms:.1f} ms = RTT − {est.access_ms:.1f} ms access"
            if est.method is RttMethod.MODEL
            else "the whole measured RTT"
        )
        typer.echo(f"latency circle: {_circle_label(est)} ({split})")
        return

    rows = []
    for h in cat.hubs.values():
        est = rtt(src, h, params)
        rows.append({**_as_json(est, params), "hub_id": h.id, "circle": _circle_label(est)})
    rows.sort(key=lambda r: (r["rtt_ms"], r["hub_id"]))
    if as_json:
        print_json({"from": src.name, "route_inflation": inflation, "hubs": rows})
        return
    print_table(
        rows,
        ["to", "distance_km", "rtt_ms", "network_rtt_ms", "circle", "method"],
        title=(
            f"RTT from {src.name} to each national hub (route inflation {inflation:g}); "
            "circles apply to the network part (RTT − access)"
        ),
        headers={
            "to": "hub",
            "distance_km": "km",
            "rtt_ms": "RTT ms",
            "network_rtt_ms": "network ms",
            "circle": "latency circle",
        },
    )


def register(app: typer.Typer) -> None:
    """Add ``suanli latency`` to ``app``."""
    app.command("latency")(latency)
