"""Delivering an agent's queued reports, in order, each under its own Idempotency-Key.

A report that cannot be delivered now (the exchange unreachable, busy or failing) stops
the round and is retried later with the same key, so the exchange applies it once. A
report the exchange refuses for good (stale: the work moved on; or rejected as invalid) is
dropped: it would never be applied.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from suanli.agent.exchange import ExchangeLink, Stale
from suanli.agent.journal import Held, Journal
from suanli.sdk import ApiError

__all__ = ["deliver"]

log = logging.getLogger("suanli.agent")


def deliver(
    journal: Journal, link: ExchangeLink, until: float, monotonic: Callable[[], float]
) -> list[Held]:
    """Send queued reports until the outbox is empty or ``until`` (monotonic) passes; a
    long backlog goes over several calls, so heartbeats keep their pace. ``ApiError`` when
    one cannot be delivered now. Returns held work whose own lease's report was refused as
    stale: whatever that lease still runs is not wanted (the same work leased again since,
    under a new token, is)."""
    unwanted: list[Held] = []
    for out in list(journal.outbox.values()):
        if monotonic() > until:
            break
        try:
            link.report(out.key, out.body)
        except Stale as exc:
            log.info("report %s refused: %s", out.key, exc)
            held = journal.held.get(str(out.body.get("allocation_id", "")))
            if held is not None and held.token == out.body.get("lease_token"):
                unwanted.append(held)
        except ApiError as exc:
            if exc.status is None or exc.status >= 500 or exc.status == 429:
                raise
            log.error("report %s rejected (%s): dropped", out.key, exc)
        journal.sent(out.key)
    return unwanted
