"""A change counter that wakes waiters: what gateways long-poll on in this process.

Anything that changes what gateways see (a round written, a key created or revoked, a
service updated, a replica's health) calls :meth:`Changes.bump`; a long-poll waits on
:meth:`Changes.wait` and re-reads the state when woken or when its timeout passes (the
timeout is also what catches changes made by another process).
"""

from __future__ import annotations

import threading

__all__ = ["Changes"]


class Changes:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._count = 0

    @property
    def count(self) -> int:
        return self._count

    def bump(self) -> None:
        with self._cond:
            self._count += 1
            self._cond.notify_all()

    def wait(self, seen: int, timeout_s: float) -> int:
        """Block until the count differs from ``seen`` or ``timeout_s`` passes (call it
        from a worker thread, not the event loop); the count now."""
        with self._cond:
            self._cond.wait_for(lambda: self._count != seen, timeout=max(0.0, timeout_s))
            return self._count
