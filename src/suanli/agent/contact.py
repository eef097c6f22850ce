"""An agent's side of the exchange's heartbeat timeout: when it must call again, and when
the exchange has stopped counting on it.

The exchange takes a site down — and places its work elsewhere — once it has heard nothing
from its agent (registration, heartbeat or lease) for the heartbeat timeout. The agent
keeps the mirror image: the time it *sent* the last such call that was answered. The
exchange heard that call no earlier, so its sweep never comes before the agent's own
expiry: an agent cut off stops its work by then, and work never runs on both sides.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["Contact"]


class Contact:
    """Heartbeat pacing and lease expiry on the monotonic clock ``monotonic``."""

    def __init__(self, monotonic: Callable[[], float]) -> None:
        self._mono = monotonic
        self.interval_s = 5.0
        self.timeout_s = 30.0
        self.next_heartbeat = 0.0
        self._heard_at: float | None = None

    def answered(self, sent: float, interval_s: float, timeout_s: float) -> None:
        """A registration or heartbeat sent at ``sent`` was answered with the exchange's
        pacing; the next heartbeat is due an interval from now."""
        # At least three heartbeats per timeout, whatever the exchange suggests.
        self.interval_s = min(interval_s, timeout_s / 3)
        self.timeout_s = timeout_s
        self.heard(sent)
        self.next_heartbeat = self._mono() + self.interval_s

    def heard(self, sent: float) -> None:
        """Another sign of life (a lease) sent at ``sent`` was answered."""
        self._heard_at = sent if self._heard_at is None else max(self._heard_at, sent)

    def heartbeat_due(self) -> bool:
        return self._mono() >= self.next_heartbeat

    def expired_for_s(self) -> float | None:
        """Seconds since the exchange last heard this agent, once past the timeout (the
        lease on its work expired); None before, or before it was ever heard."""
        if self._heard_at is None:
            return None
        silent_s = self._mono() - self._heard_at
        return silent_s if silent_s >= self.timeout_s else None
