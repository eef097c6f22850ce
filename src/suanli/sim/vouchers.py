"""Voucher programs of a scenario as the market sees them.

A program's yearly budget and per-buyer cap are prorated to the run (budget × hours /
8,760). ``buyer_cities`` become the buyer ids the workload gives that city's buyers
(``<city>-NN``); provinces and hubs resolve through the catalogue (English or Chinese).
"""

from __future__ import annotations

import math
import re

from suanli.catalog import load_catalog
from suanli.catalog.queries import city, hub, power
from suanli.errors import InvalidInput
from suanli.market.snapshot import VoucherProgram
from suanli.sim.scenario import Scenario

__all__ = ["buyer_slug", "voucher_programs"]

HOURS_PER_YEAR = 8760.0


def buyer_slug(city_name: str) -> str:
    """The prefix of a city's buyer ids (``Xi'an`` → ``xi-an``)."""
    return re.sub(r"[^a-z0-9]+", "-", city_name.lower()).strip("-")


def voucher_programs(scenario: Scenario, horizon_h: float) -> tuple[VoucherProgram, ...]:
    """The scenario's programs for a run of ``horizon_h`` hours; InvalidInput on bad names."""
    cat = load_catalog()
    share = horizon_h / HOURS_PER_YEAR
    out = []
    for i, v in enumerate(scenario.vouchers):
        where = f"vouchers.{i} ({v.id})"
        try:
            buyers = None
            if v.buyer_cities is not None:
                per_city = scenario.batch.buyers_per_city
                buyers = frozenset(
                    f"{buyer_slug(city(cat, c).name)}-{n:02d}"
                    for c in v.buyer_cities
                    for n in range(per_city)
                )
            provinces = (
                frozenset(power(cat, p).province for p in v.eligible_provinces)
                if v.eligible_provinces is not None
                else None
            )
            hubs = (
                frozenset(hub(cat, h).id for h in v.eligible_hubs)
                if v.eligible_hubs is not None
                else None
            )
        except InvalidInput as exc:
            raise InvalidInput(f"{where}: {exc}") from None
        out.append(
            VoucherProgram(
                id=v.id,
                name=v.name or v.id,
                coverage=v.coverage,
                budget_cny=v.budget_cny_per_year * share,
                per_buyer_cap_cny=(
                    v.per_buyer_cap_cny_per_year * share
                    if v.per_buyer_cap_cny_per_year is not None
                    else None
                ),
                eligible_sites=frozenset(v.eligible_sites) if v.eligible_sites else None,
                eligible_hubs=hubs,
                eligible_provinces=provinces,
                eligible_buyers=buyers,
                domestic_gpus_only=v.domestic_gpus_only,
                valid_from_h=v.from_day * 24.0,
                valid_until_h=v.until_day * 24.0 if v.until_day is not None else math.inf,
            )
        )
    return tuple(out)
