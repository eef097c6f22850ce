"""Rate limits: token buckets keyed by who is calling.

Two budgets, both held in memory by one process:

- ``requests``: every request, keyed on the authenticated account (however its
  ``Authorization`` header is spelled), or on the client address when there is none.
- ``auth_failures``: failed authentications per client address, a much smaller budget;
  once it is spent, requests from that address with a token the exchange does not already
  know are answered 429 before any database lookup.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

__all__ = ["RateLimits", "TokenBuckets", "account_key", "address_key"]

_MAX_KEYS = 50_000  # beyond this the table is cleared (a flood of addresses, not a leak)


def account_key(account_id: str) -> str:
    return f"acct:{account_id}"


def address_key(host: str) -> str:
    return f"ip:{host}"


class TokenBuckets:
    """A token bucket per key: ``rate_per_s`` sustained, ``burst`` at once."""

    def __init__(self, rate_per_s: float, burst: int) -> None:
        self.rate = rate_per_s
        self.burst = float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str, now: float | None = None) -> float:
        """Spend one token: 0 if a request may pass now; else the seconds to wait."""
        t = time.monotonic() if now is None else now
        with self._lock:
            tokens = self._level(key, t)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, t)
                return 0.0
            self._buckets[key] = (tokens, t)
            if len(self._buckets) > _MAX_KEYS:
                self._buckets.clear()
            return (1.0 - tokens) / self.rate

    def wait_s(self, key: str, now: float | None = None) -> float:
        """The seconds until ``key`` has a token again (0 if it has one), spending none."""
        t = time.monotonic() if now is None else now
        with self._lock:
            tokens = self._level(key, t)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def _level(self, key: str, t: float) -> float:
        tokens, last = self._buckets.get(key, (self.burst, t))
        return min(self.burst, tokens + (t - last) * self.rate)


@dataclass(frozen=True, slots=True)
class RateLimits:
    """The two budgets of one application (see the module docstring)."""

    requests: TokenBuckets
    auth_failures: TokenBuckets

    @classmethod
    def of(
        cls, rate_per_s: float, burst: int, auth_failures_per_min: float, auth_failure_burst: int
    ) -> RateLimits:
        return cls(
            requests=TokenBuckets(rate_per_s, burst),
            auth_failures=TokenBuckets(auth_failures_per_min / 60.0, auth_failure_burst),
        )
