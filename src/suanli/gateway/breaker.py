"""Per-replica circuit breakers: stop sending users to a replica that keeps failing.

Closed → open after ``failures`` consecutive failures (a refused or reset connection, a
5xx, a timeout before the first byte). Open, the replica gets nothing for a cooldown that
doubles with every consecutive opening (capped), so a replica that flaps is tried less and
less often. After the cooldown it is *half-open*: exactly one trial — a real request or
an active GET of its health path, whichever comes first — closes it on success or opens
it again (longer) on failure.

Pure: time comes from the injected monotonic clock, nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Breaker", "BreakerParams", "Pass", "State"]


class State(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"  # cooldown over, the trial is free or under way


class Pass(StrEnum):
    """What :meth:`Breaker.acquire` granted: normal traffic, or the one trial."""

    CLOSED = "closed"
    TRIAL = "trial"


@dataclass(frozen=True, slots=True)
class BreakerParams:
    failures: int = 3  # consecutive failures that open the breaker
    cooldown_s: float = 1.0  # first ejection
    max_cooldown_s: float = 30.0  # longest ejection


@dataclass(slots=True)
class _Replica:
    failures: int = 0  # consecutive, while closed
    openings: int = 0  # consecutive openings (reset when it closes)
    open_until: float | None = None  # None: closed
    trial: bool = False  # the half-open trial is under way


class Breaker:
    def __init__(self, clock: Callable[[], float], params: BreakerParams | None = None) -> None:
        self._clock = clock
        self.params = params or BreakerParams()
        self._r: dict[str, _Replica] = {}

    def state(self, rid: str) -> State:
        r = self._r.get(rid)
        if r is None or r.open_until is None:
            return State.CLOSED
        return State.HALF_OPEN if self._clock() >= r.open_until else State.OPEN

    def usable(self, rid: str) -> bool:
        """Whether :meth:`acquire` would grant a pass now (no side effect)."""
        r = self._r.get(rid)
        if r is None or r.open_until is None:
            return True
        return not r.trial and self._clock() >= r.open_until

    def acquire(self, rid: str) -> Pass | None:
        """A pass to send one request (or probe); half-open, only the first caller gets
        one (the trial) until it reports back."""
        r = self._r.get(rid)
        if r is None or r.open_until is None:
            return Pass.CLOSED
        if r.trial or self._clock() < r.open_until:
            return None
        r.trial = True
        return Pass.TRIAL

    def success(self, rid: str, granted: Pass) -> None:
        r = self._r.get(rid)
        if r is None:
            return
        if r.open_until is None:
            r.failures = 0
        elif granted is Pass.TRIAL:
            self._r[rid] = _Replica()  # closed, history forgotten
        # a request let through before the breaker opened proves nothing about now

    def failure(self, rid: str, granted: Pass) -> None:
        r = self._r.setdefault(rid, _Replica())
        if r.open_until is None:
            r.failures += 1
            if r.failures >= self.params.failures:
                self._open(r)
        elif granted is Pass.TRIAL:
            r.trial = False
            self._open(r)

    def release(self, rid: str, granted: Pass) -> None:
        """The request ended without saying anything about the replica (the client left):
        a trial goes back, for the next request or probe."""
        r = self._r.get(rid)
        if r is not None and granted is Pass.TRIAL:
            r.trial = False

    def due_for_probe(self) -> list[str]:
        """Replicas whose cooldown is over and whose trial is free."""
        now = self._clock()
        return [
            rid
            for rid, r in self._r.items()
            if r.open_until is not None and not r.trial and now >= r.open_until
        ]

    def forget(self, keep: set[str]) -> None:
        """Drop replicas that left the state (their ids never come back)."""
        for rid in [rid for rid in self._r if rid not in keep]:
            del self._r[rid]

    def _open(self, r: _Replica) -> None:
        r.openings += 1
        p = self.params
        cooldown = min(p.max_cooldown_s, p.cooldown_s * 2.0 ** (r.openings - 1))
        r.open_until = self._clock() + cooldown
        r.failures = 0
