"""The built-in catalogue: data files with a source column, loaders and pure queries.

- :class:`Catalog` — accelerators, models, hubs, clusters, cities, power prices (by province).
- :func:`load_catalog` — read the shipped CSV files (the only I/O here; cached per process).
- :func:`accelerator`, :func:`model`, :func:`hub`, :func:`cluster`, :func:`city`,
  :func:`power` — case-insensitive lookups with aliases, raising ``UnknownName`` with the
  nearest valid names.
- :func:`national_summary` — GPUs of a fleet by model, hub and region, with catalogue counts.
- ``suanli.catalog.fleet.load_fleet`` — the calibrated synthetic national fleet.
"""

from __future__ import annotations

from suanli.catalog._load import build_catalog, load_catalog
from suanli.catalog._types import Catalog, normalize_name
from suanli.catalog.queries import (
    accelerator,
    city,
    cluster,
    clusters_in,
    hub,
    model,
    power,
)
from suanli.catalog.summary import OUTSIDE_HUBS, NationalSummary, national_summary

__all__ = [
    "OUTSIDE_HUBS",
    "Catalog",
    "NationalSummary",
    "accelerator",
    "build_catalog",
    "city",
    "cluster",
    "clusters_in",
    "hub",
    "load_catalog",
    "model",
    "national_summary",
    "normalize_name",
    "power",
]
