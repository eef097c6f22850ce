"""Bounded building blocks shared by the schemas."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

__all__ = [
    "ID_PATTERN",
    "POOL_ID_PATTERN",
    "Fen",
    "Id",
    "In",
    "Name",
    "Out",
    "PoolRef",
    "PositiveFen",
    "Text",
    "Timestamp",
    "bounded_float",
    "lax_enum",
]

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,79}$"
POOL_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,79}$"  # pools are "<site>/<name>"
MAX_FEN = 10**13  # 100 billion yuan: far above any budget, far below 2**63

Id = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
PoolRef = Annotated[str, StringConstraints(pattern=POOL_ID_PATTERN)]
Name = Annotated[
    str, StringConstraints(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$")
]
Text = Annotated[str, StringConstraints(max_length=10_000, pattern=r"^[^\x00]*$")]
Fen = Annotated[int, Field(ge=0, le=MAX_FEN)]
PositiveFen = Annotated[int, Field(gt=0, le=MAX_FEN)]


def bounded_float(lo: float, hi: float, *, strict_lo: bool = False) -> object:
    if strict_lo:
        return Field(gt=lo, le=hi, allow_inf_nan=False)
    return Field(ge=lo, le=hi, allow_inf_nan=False)


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    if not 2000 <= value.year <= 2200:
        raise ValueError("must be between the years 2000 and 2200")
    return value.astimezone(UTC)


# Lax on purpose: JSON has no datetime, so a timestamp arrives as an ISO 8601 string.
Timestamp = Annotated[datetime, AfterValidator(_utc), Field(strict=False)]


def lax_enum(default: object = ...) -> Any:
    """A field of a string enum: JSON sends the value (``"buyer"``), never the member."""
    return Field(default=default, strict=False)


class In(BaseModel):
    """A request body: unknown fields are refused, and every value is strict — a count
    or an amount of fen is a JSON integer (not ``true``, ``"100"`` or ``8.0``), a flag is
    ``true``/``false`` (not ``"yes"`` or ``1``), a string is a string. A float field still
    takes an integer. Timestamps and enums are read from their JSON strings."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)
