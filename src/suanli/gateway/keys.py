"""Inference keys: who may call which service, and how much.

The exchange sends SHA-256 digests of the keys only; a caller's key is hashed and looked
up, and is good for its own service alone. A key missing from the latest state (revoked,
or never issued) is refused at once — the long-poll brings a revocation within
milliseconds. Limits per key:

- requests per minute: a token bucket (a minute's worth of burst, refilled steadily);
- tokens per UTC day: the exchange's ``tokens_today`` plus what this gateway metered that
  the exchange has not counted yet — usage not yet acknowledged, and acknowledged usage
  until the next state (which carries it in ``tokens_today``) arrives.

Pure: the clock (Unix seconds) is injected.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from suanli.gateway.protocol import KeyEntry

__all__ = ["KeyTable", "Limited", "digest"]

_DAY_S = 86_400.0


def digest(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Limited:
    """Refused for a limit: 429 with ``Retry-After: retry_after_s``."""

    kind: str  # "requests" | "tokens"
    retry_after_s: int
    message: str


@dataclass(slots=True)
class _Bucket:
    rpm: int
    tokens: float
    at: float


class KeyTable:
    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._by_digest: dict[str, KeyEntry] = {}
        self._buckets: dict[str, _Bucket] = {}
        self._pending: dict[str, int] = {}  # metered here, not acknowledged
        self._acked: dict[str, int] = {}  # acknowledged, not yet in a state's tokens_today

    def load(self, keys: Iterable[KeyEntry]) -> None:
        """A new state: its keys replace the table; acknowledged usage is in its counts."""
        self._by_digest = {k.digest: k for k in keys}
        ids = {k.id for k in self._by_digest.values()}
        self._buckets = {i: b for i, b in self._buckets.items() if i in ids}
        self._acked.clear()

    def lookup(self, api_key: str) -> KeyEntry | None:
        return self._by_digest.get(digest(api_key))

    def admit(self, key: KeyEntry) -> Limited | None:
        """None, and one request counted against the key's rate; or why not."""
        if key.tokens_per_day is not None:
            used = key.tokens_today + self._pending.get(key.id, 0) + self._acked.get(key.id, 0)
            if used >= key.tokens_per_day:
                wait = _DAY_S - self._clock() % _DAY_S
                return Limited(
                    "tokens",
                    max(1, math.ceil(wait)),
                    f"this key's {key.tokens_per_day} tokens for today are used up",
                )
        if key.rpm is not None:
            return self._take(key.id, key.rpm)
        return None

    def metered(self, key_id: str, tokens: int) -> None:
        """Usage this gateway recorded (input + output tokens)."""
        if tokens:
            self._pending[key_id] = self._pending.get(key_id, 0) + tokens

    def acknowledged(self, per_key: Mapping[str, int]) -> None:
        """The exchange recorded a batch holding these tokens per key."""
        for key_id, tokens in per_key.items():
            left = self._pending.get(key_id, 0) - tokens
            if left > 0:
                self._pending[key_id] = left
            else:
                self._pending.pop(key_id, None)
            self._acked[key_id] = self._acked.get(key_id, 0) + tokens

    def _take(self, key_id: str, rpm: int) -> Limited | None:
        now = self._clock()
        b = self._buckets.get(key_id)
        if b is None or b.rpm != rpm:
            b = self._buckets[key_id] = _Bucket(rpm, float(rpm), now)
        rate = rpm / 60.0
        b.tokens = min(float(rpm), b.tokens + max(0.0, now - b.at) * rate)
        b.at = now
        if b.tokens >= 1.0:
            b.tokens -= 1.0
            return None
        if rate <= 0:
            return Limited("requests", 60, "this key may send no requests")
        wait = (1.0 - b.tokens) / rate
        return Limited("requests", max(1, math.ceil(wait)), f"this key's limit is {rpm}/min")
