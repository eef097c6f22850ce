"""Back-pressure: at most ``max_concurrency`` requests in flight per replica, a FIFO queue
when every candidate is full, and a 429 when the wait would break the TTFT SLO anyway.

A replica's ``max_concurrency`` is the batch the perf model admits; beyond it requests
only queue inside the engine and everyone's TTFT grows. Queuing here instead keeps the
choice open (a slot may free on any candidate) and lets the gateway give up in time: the
wait may not exceed what is left of the TTFT budget once the replica's own time to first
token and the network are paid (:func:`queue_deadline_s`). A freed slot goes to the
longest-waiting request that can use that replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from suanli.gateway.routing import Candidate

__all__ = ["Admission", "Full", "queue_deadline_s"]


def queue_deadline_s(ttft_ms: float, server_ttft_ms: float, rtt_ms: float, floor_s: float) -> float:
    """The longest a request may wait for a slot: its TTFT budget less the replica's and
    the network's share, at least ``floor_s``."""
    return max(floor_s, (ttft_ms - server_ttft_ms - rtt_ms) / 1000.0)


class Full(Exception):
    """No slot freed before the deadline: answer 429 after ``retry_after_s``."""

    def __init__(self, waited_s: float, retry_after_s: int) -> None:
        super().__init__(f"every replica is busy (waited {waited_s * 1000:.0f} ms)")
        self.waited_s = waited_s
        self.retry_after_s = retry_after_s


@dataclass(slots=True)
class _Waiter:
    wanted: frozenset[str]
    future: asyncio.Future[Candidate]
    by_rid: dict[str, Candidate] = field(default_factory=dict)


class Admission:
    """Slots per replica (allocation id) and the queue of requests waiting for one."""

    def __init__(self) -> None:
        self.in_flight: dict[str, int] = {}
        self._limit: dict[str, int] = {}
        self._queue: deque[_Waiter] = deque()

    @property
    def queued(self) -> int:
        return len(self._queue)

    def try_acquire(self, candidates: Sequence[Candidate]) -> Candidate | None:
        """The first candidate with a free slot (taken), or None."""
        for c in candidates:
            rid = c.rid
            self._limit[rid] = c.replica.max_concurrency
            n = self.in_flight.get(rid, 0)
            if n < c.replica.max_concurrency:
                self.in_flight[rid] = n + 1
                return c
        return None

    async def acquire(self, candidates: Sequence[Candidate], timeout_s: float) -> Candidate:
        """A slot on one of ``candidates``, waiting up to ``timeout_s`` (FIFO) for one to
        free; :class:`Full` when none did."""
        got = self.try_acquire(candidates)
        if got is not None:
            return got
        loop = asyncio.get_running_loop()
        waiter = _Waiter(frozenset(c.rid for c in candidates), loop.create_future())
        waiter.by_rid = {c.rid: c for c in candidates}
        self._queue.append(waiter)
        started = loop.time()
        try:
            async with asyncio.timeout(timeout_s):
                return await waiter.future
        except TimeoutError:
            if _granted(waiter.future):  # the slot came as the deadline struck: use it
                return waiter.future.result()
            raise Full(loop.time() - started, max(1, math.ceil(timeout_s))) from None
        except asyncio.CancelledError:
            if _granted(waiter.future):
                self.release(waiter.future.result().rid)
            raise
        finally:
            if not waiter.future.done():
                waiter.future.cancel()
            with contextlib.suppress(ValueError):
                self._queue.remove(waiter)

    def release(self, rid: str) -> None:
        """A request on ``rid`` ended: its slot goes to the first waiter that can use it."""
        for w in self._queue:
            if rid in w.wanted and not w.future.done():
                limit = self._limit.get(rid, 1)
                if self.in_flight.get(rid, 0) <= limit:
                    w.future.set_result(w.by_rid[rid])
                    self._queue.remove(w)
                    return
        n = self.in_flight.get(rid, 0) - 1
        if n > 0:
            self.in_flight[rid] = n
        else:
            self.in_flight.pop(rid, None)

    def set_limits(self, limits: dict[str, int]) -> None:
        """New replicas or concurrency limits (a new state): hand out slots that opened."""
        self._limit.update(limits)
        for rid, limit in limits.items():
            while self.in_flight.get(rid, 0) < limit:
                w = next((w for w in self._queue if rid in w.wanted), None)
                if w is None:
                    break
                self.in_flight[rid] = self.in_flight.get(rid, 0) + 1
                w.future.set_result(w.by_rid[rid])
                self._queue.remove(w)


def _granted(future: asyncio.Future[Candidate]) -> bool:
    return future.done() and not future.cancelled() and future.exception() is None
