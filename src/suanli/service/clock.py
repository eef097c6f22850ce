"""Clocks for the service: the engine's ``Clock`` (hours) plus timestamps for rows.

The service keeps UTC datetimes in the database and gives the engine hours since the
Unix epoch, so both views of one instant agree.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol

__all__ = ["ManualClock", "ServiceClock", "WallClock", "hours", "to_datetime"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def hours(at: datetime) -> float:
    """Hours since the Unix epoch of an aware datetime."""
    return (at - _EPOCH).total_seconds() / 3600.0


def to_datetime(at_h: float) -> datetime:
    return _EPOCH + timedelta(hours=at_h)


class ServiceClock(Protocol):
    def now(self) -> datetime: ...

    def now_h(self) -> float: ...


class WallClock:
    """The system clock (UTC)."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def now_h(self) -> float:
        return hours(self.now())


class ManualClock:
    """A clock that moves only when told (tests, the demo's fast-forward)."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2025, 3, 1, tzinfo=UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def now_h(self) -> float:
        return hours(self.now())

    def advance(self, *, seconds: float = 0.0, hours_: float = 0.0) -> None:
        with self._lock:
            self._now += timedelta(seconds=seconds, hours=hours_)
