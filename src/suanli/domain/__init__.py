"""Domain values shared by every layer: frozen dataclasses, enums and typed ids.

Nothing here does I/O or knows about the clock. Units are in the field names.
"""

from suanli.domain.catalog import (
    Accelerator,
    City,
    Cluster,
    Fabric,
    Hub,
    LLMModel,
    PowerPrice,
    Region,
    Vendor,
)
from suanli.domain.fleet import Fleet, Pool, PoolId, Site, SiteId

__all__ = [
    "Accelerator",
    "City",
    "Cluster",
    "Fabric",
    "Fleet",
    "Hub",
    "LLMModel",
    "Pool",
    "PoolId",
    "PowerPrice",
    "Region",
    "Site",
    "SiteId",
    "Vendor",
]
