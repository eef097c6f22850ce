"""The catalogue container and the name normalization every lookup shares."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from suanli.domain.catalog import Accelerator, City, Cluster, Hub, LLMModel, PowerPrice

__all__ = ["KINDS", "Catalog", "normalize_name"]

# The kinds of names a catalogue resolves; also the ``kind`` of UnknownName errors.
KINDS = ("accelerator", "model", "hub", "cluster", "city", "province")

# Spelling noise users add or drop: "H100 SXM" ≡ "h100-sxm", "Gui'an" ≡ "Guian".
_NOISE = str.maketrans("", "", " \t-_'’.()/·")


def normalize_name(name: str) -> str:
    """``name`` case-folded, without spaces, dashes, underscores, dots, quotes or brackets."""
    return name.casefold().translate(_NOISE)


@dataclass(frozen=True, slots=True)
class Catalog:
    """Everything the built-in catalogue knows, keyed by canonical name or id.

    ``names`` maps a kind (see :data:`KINDS`) to ``normalize_name(alias) -> key`` for every
    canonical name, id, English or Chinese name and alias of that kind; the loader fills it.
    """

    accelerators: Mapping[str, Accelerator]  # key: canonical name, e.g. "H100", "Ascend 910B"
    models: Mapping[str, LLMModel]  # key: canonical name, e.g. "DeepSeek-V3"
    hubs: Mapping[str, Hub]  # key: hub id, e.g. "gansu"
    clusters: Mapping[str, Cluster]  # key: cluster id, e.g. "qingyang"
    cities: Mapping[str, City]  # key: city name, e.g. "Shanghai"
    power: Mapping[str, PowerPrice]  # key: province, e.g. "Gansu"
    names: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
