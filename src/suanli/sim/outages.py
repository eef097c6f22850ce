"""Outages of a scenario, resolved to sites: named ones and random failures.

A named outage darkens every site of a hub, a province, a cluster, or listed sites. Random
failures are Poisson per site (``per_site_per_day``) with exponential durations, drawn from
the run's generator after the jobs. Spans of one site that overlap are merged, and none
runs past the horizon.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from suanli.catalog import load_catalog
from suanli.catalog.queries import cluster, hub, power
from suanli.errors import InvalidInput
from suanli.sim.scenario import Scenario
from suanli.sim.world import World

__all__ = ["Outage", "site_outages"]


@dataclass(frozen=True, slots=True)
class Outage:
    site_id: str
    start_h: float
    end_h: float
    reason: str


def site_outages(
    scenario: Scenario, world: World, rng: np.random.Generator, horizon_h: float
) -> tuple[Outage, ...]:
    """Outages per site, sorted by start; overlapping spans of one site merged."""
    cat = load_catalog()
    sites = world.fleet.sites
    spans: dict[str, list[tuple[float, float, str]]] = {}
    sid: str
    for i, o in enumerate(scenario.outages):
        where = f"outages.{i}"
        try:
            if o.hub is not None:
                hub_id = hub(cat, o.hub).id
                chosen = [s for s in sites.values() if s.hub_id == hub_id]
                label = f"hub {hub_id}"
            elif o.province is not None:
                prov = power(cat, o.province).province
                chosen = [s for s in sites.values() if s.province == prov]
                label = f"province {prov}"
            elif o.cluster is not None:
                cl = cluster(cat, o.cluster).id
                chosen = [s for s in sites.values() if s.cluster_id == cl]
                label = f"cluster {cl}"
            else:
                missing = [s for s in o.sites or () if s not in sites]
                if missing:
                    raise InvalidInput(f"unknown sites {', '.join(missing)}")
                chosen = [sites[s] for s in o.sites or ()]  # type: ignore[index]
                label = "sites"
        except InvalidInput as exc:
            raise InvalidInput(f"{where}: {exc}") from None
        if not chosen:
            raise InvalidInput(f"{where}: {label} has no sites in this fleet")
        reason = o.reason or f"outage: {label} dark for {o.duration_h:g} h"
        for s in chosen:
            spans.setdefault(s.id, []).append((o.start_h, o.start_h + o.duration_h, reason))
    ro = scenario.random_outages
    if ro.per_site_per_day > 0:
        for sid in sites:
            count = int(rng.poisson(ro.per_site_per_day * horizon_h / 24.0))
            starts = np.sort(rng.uniform(0.0, horizon_h, size=count))
            lengths = rng.exponential(ro.mean_duration_h, size=count)
            for t0, dur in zip(starts.tolist(), lengths.tolist(), strict=True):
                spans.setdefault(sid, []).append((t0, t0 + dur, "random site failure"))
    out = []
    for sid, items in spans.items():
        for start, end, reason in _merge_spans(items):
            if start < horizon_h:
                out.append(Outage(sid, start, min(end, horizon_h), reason))
    return tuple(sorted(out, key=lambda o: (o.start_h, o.site_id)))


def _merge_spans(items: list[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    merged: list[tuple[float, float, str]] = []
    for start, end, reason in sorted(items):
        if merged and start <= merged[-1][1]:
            s0, e0, r0 = merged[-1]
            merged[-1] = (s0, max(e0, end), r0)
        else:
            merged.append((start, end, reason))
    return merged
