"""Sellers' sites, pools and offers."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field, model_validator

from suanli.domain import Fabric, Region
from suanli.service.schemas.common import Id, In, Name, Out, PoolRef, Timestamp, lax_enum

__all__ = [
    "OfferCreate",
    "OfferOut",
    "PoolCreate",
    "PoolOut",
    "PoolUpdate",
    "SiteCreate",
    "SiteOut",
    "SiteState",
]

Reserve = Annotated[float, Field(ge=0, le=10_000, allow_inf_nan=False)]


class SiteCreate(In):
    id: Id | None = Field(default=None, description="chosen by the seller; generated if absent")
    name: Name
    province: Name
    city: Name | None = None
    region: Region = lax_enum(Region.EAST)
    lat: float = Field(ge=-90, le=90, allow_inf_nan=False)
    lon: float = Field(ge=-180, le=180, allow_inf_nan=False)
    hub_id: Name | None = None
    pue: float = Field(default=1.3, ge=1.0, le=3.0, allow_inf_nan=False)
    power_price_cny_per_kwh: float = Field(default=0.6, ge=0, le=100, allow_inf_nan=False)
    wan_gbps: float = Field(default=10.0, gt=0, le=100_000, allow_inf_nan=False)


class SiteOut(Out):
    id: str
    tenant_id: str
    name: str
    province: str
    city: str
    region: str
    lat: float
    lon: float
    hub_id: str | None
    pue: float
    power_price_cny_per_kwh: float
    wan_gbps: float
    up: bool
    created_at: datetime


class SiteState(In):
    up: bool
    reason: Name = "reported by the seller"


class PoolCreate(In):
    id: PoolRef | None = None
    site_id: Id
    gpu: Name
    gpu_count: int = Field(gt=0, le=1_000_000)
    gpus_per_node: int = Field(default=8, gt=0, le=64)
    fabric: Fabric = lax_enum(Fabric.ETHERNET)
    reserve_cny_per_gpu_hour: Reserve

    @model_validator(mode="after")
    def _whole_nodes(self) -> PoolCreate:
        if self.gpu_count % self.gpus_per_node:
            raise ValueError(
                f"gpu_count {self.gpu_count} is not a whole number of "
                f"{self.gpus_per_node}-GPU nodes"
            )
        return self


class PoolUpdate(In):
    reserve_cny_per_gpu_hour: Reserve | None = None


class PoolOut(Out):
    id: str
    site_id: str
    tenant_id: str
    gpu: str
    gpu_count: int
    gpus_per_node: int
    fabric: str
    reserve_cny_per_gpu_hour: float
    speed: float
    gpus_allocated: int = 0
    on_offer: bool = False
    created_at: datetime


class OfferCreate(In):
    pool_id: PoolRef
    reserve_cny_per_gpu_hour: Reserve
    available_from: Timestamp | None = None
    available_until: Timestamp | None = None

    @model_validator(mode="after")
    def _window(self) -> OfferCreate:
        if (
            self.available_from is not None
            and self.available_until is not None
            and self.available_until <= self.available_from
        ):
            raise ValueError("available_until must be after available_from")
        return self


class OfferOut(Out):
    id: str
    pool_id: str
    tenant_id: str
    reserve_cny_per_gpu_hour: float
    available_from: datetime
    available_until: datetime | None
    withdrawn_at: datetime | None
    created_at: datetime
