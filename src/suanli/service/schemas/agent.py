"""The agent API: sellers lease placed work and report what happened to it."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from suanli.service.schemas.common import Id, In, Name, Out

__all__ = ["LeaseOut", "LeaseRequest", "ReportIn"]


class LeaseRequest(In):
    site_id: Id | None = None
    limit: int = Field(default=100, gt=0, le=1000)


class LeaseOut(Out):
    allocation_id: str
    job_id: str
    pool_id: str
    site_id: str
    gpus: int
    nodes: list[list[int]]
    image: str | None
    command: str | None
    planned_h: float
    checkpoint_every_h: float | None


class ReportIn(In):
    job_id: Id
    state: Literal["running", "succeeded", "failed", "preempted"]
    exit_code: int | None = Field(default=None, ge=-(2**31), lt=2**31)
    gpu_hours: float | None = Field(
        default=None,
        ge=0,
        le=10_000_000,
        allow_inf_nan=False,
        description="GPU-hours delivered; measured from the clock if absent",
    )
    reason: Name | None = None
