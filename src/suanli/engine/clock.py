"""Time is injected: the engine asks a Clock, never the system.

``SimClock`` is advanced by the simulator; the service supplies a wall clock (in
``service``) with the same interface. Hours since the clock's epoch, as floats.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["Clock", "SimClock"]


class Clock(Protocol):
    def now_h(self) -> float: ...


class SimClock:
    """A clock that moves only when told; never backwards."""

    def __init__(self, start_h: float = 0.0) -> None:
        self._now_h = start_h

    def now_h(self) -> float:
        return self._now_h

    def advance_to(self, t_h: float) -> None:
        if t_h < self._now_h:
            raise ValueError(f"a clock never goes back: {t_h} < {self._now_h}")
        self._now_h = t_h
