"""Pure lookups on a :class:`~suanli.catalog.Catalog`: no I/O, no state.

Every lookup is case-insensitive and ignores spaces, dashes, dots and quotes, accepts the
aliases listed in the data files (``"h100 sxm"`` → ``H100``, ``"910b"`` → ``Ascend 910B``,
``"宁夏"`` → the Ningxia hub), and raises :class:`~suanli.errors.UnknownName` with the
nearest valid names when nothing matches.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from suanli.catalog._types import Catalog, normalize_name
from suanli.domain.catalog import Accelerator, City, Cluster, Hub, LLMModel, PowerPrice
from suanli.errors import UnknownName

__all__ = [
    "accelerator",
    "city",
    "cluster",
    "clusters_in",
    "hub",
    "model",
    "power",
    "resolve",
]

T = TypeVar("T")


def accelerator(cat: Catalog, name: str) -> Accelerator:
    """The accelerator called ``name`` (canonical name or alias, e.g. "h100", "910B")."""
    return cat.accelerators[resolve(cat, "accelerator", cat.accelerators, name)]


def model(cat: Catalog, name: str) -> LLMModel:
    """The LLM model called ``name`` (e.g. "deepseek-r1", "Qwen/Qwen2.5-72B-Instruct")."""
    return cat.models[resolve(cat, "model", cat.models, name)]


def hub(cat: Catalog, name: str) -> Hub:
    """The national hub with id, English or Chinese name ``name`` (e.g. "gansu", "成渝")."""
    return cat.hubs[resolve(cat, "hub", cat.hubs, name)]


def cluster(cat: Catalog, name: str) -> Cluster:
    """The national cluster with id, English or Chinese name ``name`` (e.g. "Gui'an")."""
    return cat.clusters[resolve(cat, "cluster", cat.clusters, name)]


def city(cat: Catalog, name: str) -> City:
    """The demand city with English or Chinese name ``name`` (e.g. "xian", "西安")."""
    return cat.cities[resolve(cat, "city", cat.cities, name)]


def power(cat: Catalog, province: str) -> PowerPrice:
    """Power price and typical PUE of ``province`` (English or Chinese name)."""
    return cat.power[resolve(cat, "province", cat.power, province)]


def clusters_in(cat: Catalog, hub_name: str) -> list[Cluster]:
    """The clusters of the hub called ``hub_name``, in catalogue order."""
    hub_id = hub(cat, hub_name).id
    return [c for c in cat.clusters.values() if c.hub_id == hub_id]


def resolve(cat: Catalog, kind: str, table: Mapping[str, T], name: str) -> str:
    """The key of ``table`` that ``name`` denotes, or UnknownName(kind, name, keys)."""
    if name in table:
        return name
    norm = normalize_name(name)
    key = cat.names.get(kind, {}).get(norm)
    if key is not None and key in table:
        return key
    # A hand-built Catalog may have no ``names`` index: fall back to the keys themselves.
    for candidate in table:
        if normalize_name(candidate) == norm:
            return candidate
    raise UnknownName(kind, name, table.keys())
