"""What the engine needs besides the snapshot: catalogue values and the latency model.

Built once by the caller (CLI, simulator, service) and passed in; the engine reads no
files and no globals.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from suanli.domain import Accelerator, City, Hub, LLMModel
from suanli.latency.model import LatencyParams

__all__ = ["MarketContext"]


@dataclass(frozen=True)
class MarketContext:
    """Catalogue lookups and model parameters for clearing."""

    accelerators: Mapping[str, Accelerator]
    models: Mapping[str, LLMModel]
    cities: Mapping[str, City]
    hubs: Mapping[str, Hub]
    latency: LatencyParams = field(default_factory=LatencyParams)

    def hub_of_province(self, province: str) -> str | None:
        for hub in self.hubs.values():
            if province in hub.provinces:
                return hub.id
        return None
