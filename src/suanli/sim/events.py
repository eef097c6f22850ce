"""The event loop: the environment owns simulated time and the order of events.

Pop the earliest event, move the clock to it, hand it to the handler, push what the handler
returns. Events at the same time run in the order they were scheduled: ties break by a
counter owned by this environment instance (never a global), so two runs never interleave
and a run's order depends only on what was scheduled. Handlers never touch the queue.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from typing import Generic, Protocol, TypeVar

from suanli.engine.clock import SimClock

__all__ = ["Environment", "Timed"]


class Timed(Protocol):
    @property
    def at_h(self) -> float: ...


E = TypeVar("E", bound=Timed)


class Environment(Generic[E]):
    """A queue of timed events on a :class:`~suanli.engine.clock.SimClock`."""

    def __init__(self, clock: SimClock | None = None) -> None:
        self.clock = clock or SimClock()
        self._queue: list[tuple[float, int, E]] = []
        self._seq = 0  # tie-breaker: scheduling order, per environment

    def schedule(self, event: E) -> None:
        if event.at_h < self.clock.now_h():
            raise ValueError(f"cannot schedule in the past: {event.at_h} < {self.clock.now_h()}")
        heapq.heappush(self._queue, (event.at_h, self._seq, event))
        self._seq += 1

    def __len__(self) -> int:
        return len(self._queue)

    def run(self, handle: Callable[[E], Iterable[E]], until_h: float) -> int:
        """Handle events up to and including ``until_h``; returns how many ran."""
        count = 0
        while self._queue and self._queue[0][0] <= until_h:
            at_h, _, event = heapq.heappop(self._queue)
            self.clock.advance_to(at_h)
            for new in handle(event):
                self.schedule(new)
            count += 1
        return count
