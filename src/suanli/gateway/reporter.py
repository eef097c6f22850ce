"""Sending the journal's batches: roll the segment every interval, send what is pending
(oldest first), delete on acknowledgement, back off while the exchange is unreachable.

A batch the exchange *refuses* (a 4xx other than 401, 403, 408 and 429: resending the
same bytes cannot succeed) is set aside in its file and skipped, so one bad batch never
holds up the metering behind it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from suanli.gateway.journal import Batch, Journal
from suanli.gateway.link import ExchangeLink

__all__ = ["Reporter"]

log = logging.getLogger("suanli.gateway")


class Reporter:
    def __init__(
        self,
        journal: Journal,
        link: ExchangeLink,
        on_ack: Callable[[Batch], None],
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
        on_refused: Callable[[Batch], None] | None = None,
    ) -> None:
        self.journal = journal
        self.link = link
        self.on_ack = on_ack
        self.on_refused = on_refused
        self.interval_s = interval_s
        self._clock = clock
        self._failures = 0
        self._next_try = 0.0

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                self.journal.roll()
                if self.journal.pending and self._clock() >= self._next_try:
                    await self.send_pending()
            except Exception:  # a full disk, a bug: say so, keep metering
                log.exception("usage reporting failed; trying again")

    async def send_pending(self) -> bool:
        """Send every pending batch; False at the first failure (the rest wait)."""
        for batch in list(self.journal.pending.values()):
            try:
                ack = await self.link.report(batch.report)
                if ack.batch_id != batch.batch_id:
                    raise ValueError(f"acknowledged {ack.batch_id}, not {batch.batch_id}")
            except Exception as exc:
                if _refused(exc):  # resending cannot help; it must not block the rest
                    kept = self.journal.quarantine(batch.batch_id)
                    log.error(
                        "the exchange refused usage batch %s (%s); kept in %s",
                        batch.batch_id,
                        exc,
                        kept,
                    )
                    if self.on_refused is not None:
                        self.on_refused(batch)
                    continue
                self._failures += 1
                backoff = min(30.0, self.interval_s * 2.0 ** min(self._failures, 8))
                self._next_try = self._clock() + backoff
                if self._failures == 1 or self._failures % 10 == 0:
                    log.warning(
                        "usage batch %s not delivered (%s); %d pending, next try in %.1f s",
                        batch.batch_id,
                        exc,
                        len(self.journal.pending),
                        backoff,
                    )
                return False
            self.journal.done(batch.batch_id)
            self.on_ack(batch)
        self._failures = 0
        return True

    async def flush(self, timeout_s: float) -> bool:
        """At shutdown: close the segment and try once to deliver everything."""
        self.journal.roll()
        if not self.journal.pending:
            return True
        try:
            async with asyncio.timeout(timeout_s):
                return await self.send_pending()
        except TimeoutError:
            return False


_TRANSIENT = frozenset({401, 403, 408, 429})  # a token being rotated, a timeout, a limit


def _refused(exc: Exception) -> bool:
    """The exchange answered that this batch will never be accepted (``status`` is set by
    :class:`LinkError` and by the exchange's in-process problems alike)."""
    status = getattr(exc, "status", None)
    return isinstance(status, int) and 400 <= status < 500 and status not in _TRANSIENT
